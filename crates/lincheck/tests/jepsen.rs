//! The checker must agree with the published verdicts on Jepsen's etcd register histories, the
//! standard corpus for linearizability checkers (also used by Knossos' successors and Porcupine).

use std::path::Path;

use lincheck::{CheckOptions, Verdict, check, parse_jepsen};

#[test]
fn agrees_with_published_verdicts_on_jepsen_etcd_histories() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/jepsen-etcd");
    let verdicts = std::fs::read_to_string(dir.join("verdicts.txt")).expect("verdicts.txt");
    let mut checked = 0;
    let mut disagreements = Vec::new();
    for line in verdicts.lines().filter(|l| !l.trim().is_empty()) {
        let (file, expected) = line.split_once(' ').expect("`FILE true|false` lines");
        let expected: bool = expected.trim().parse().expect("true or false");
        let text = std::fs::read_to_string(dir.join(file)).expect(file);
        let history = parse_jepsen(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let verdict = check(&history, &CheckOptions::default());
        assert!(
            !matches!(verdict, Verdict::Timeout { .. }),
            "{file}: search ran out of budget"
        );
        if verdict.is_linearizable() != expected {
            disagreements.push(format!("{file}: expected {expected}, got {verdict}"));
        }
        checked += 1;
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(checked > 50, "only {checked} files listed");
}

#[test]
fn failed_cas_is_an_observation_of_a_different_value() {
    let log = |cas_type: &str| {
        [
            "INFO  jepsen.util - 0\t:invoke\t:write\t1",
            "INFO  jepsen.util - 0\t:ok\t:write\t1",
            "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]",
            &format!("INFO  jepsen.util - 1\t{cas_type}\t:cas\t[1 2]"),
            "INFO  jepsen.util - 2\t:invoke\t:read\tnil",
            "INFO  jepsen.util - 2\t:ok\t:read\t1",
        ]
        .join("\n")
    };
    // The value was 1 throughout, so the cas cannot have failed its comparison...
    let failed = parse_jepsen(&log(":fail")).unwrap();
    assert_eq!(failed.len(), 3);
    assert!(!check(&failed, &CheckOptions::default()).is_linearizable());
    // ...nor succeeded, since the later read still sees 1.
    let succeeded = parse_jepsen(&log(":ok")).unwrap();
    assert!(!check(&succeeded, &CheckOptions::default()).is_linearizable());
    // A lost outcome is fine: the cas never took effect.
    let lost = parse_jepsen(&log(":info")).unwrap();
    assert!(check(&lost, &CheckOptions::default()).is_linearizable());
}
