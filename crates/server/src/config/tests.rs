//! The configuration's unit tests: flags, layering, defaults, validation messages, ids and URLs.

use super::layers::env_var;
use super::validate::{check_log_level, parse_initial_cluster};
use super::*;
use clap::{CommandFactory, Parser};
use proptest::prelude::*;
use std::collections::HashMap;
use std::io::Write;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn resolve_err(args: ServeArgs) -> String {
    match args.resolve_with(no_env) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// The lease read mode is an opt-in from a flag, the environment or the file; a typo is
/// an error, and the lease reaches the Raft configuration.
#[test]
fn read_mode_is_read_index_unless_lease_is_asked_for() {
    let args = ServeArgs {
        read_mode: Some(ReadMode::Lease),
        ..ServeArgs::default()
    };
    let c = args.resolve_with(no_env).expect("flag");
    assert_eq!(c.read_mode, ReadMode::Lease);
    let member = crate::member::serve::member_config(&c).expect("member config");
    assert_eq!(member.raft.read_only, raft::ReadOnlyOption::LeaseBased);
    let env = |key: &str| (key == "RAFTKV_READ_MODE").then(|| "lease".to_owned());
    let c = ServeArgs::default().resolve_with(env).expect("env");
    assert_eq!(c.read_mode, ReadMode::Lease);
    let file = file_with("read_mode = \"lease\"\n");
    let args = ServeArgs {
        config: Some(file.path().to_path_buf()),
        ..ServeArgs::default()
    };
    assert_eq!(
        args.resolve_with(no_env).expect("file").read_mode,
        ReadMode::Lease
    );
    let env = |key: &str| (key == "RAFTKV_READ_MODE").then(|| "leases".to_owned());
    let error = ServeArgs::default()
        .resolve_with(env)
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a read mode"), "{error}");
    let c = ServeArgs::default().resolve_with(no_env).expect("defaults");
    let member = crate::member::serve::member_config(&c).expect("member config");
    assert_eq!(member.raft.read_only, raft::ReadOnlyOption::Safe);
}

fn three() -> String {
    "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380,c=http://127.0.0.1:4380".to_owned()
}

#[test]
fn defaults_match_etcd() {
    let c = ServeArgs::default().resolve_with(no_env).expect("defaults");
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.raftkv"));
    assert_eq!(c.listen_client, "127.0.0.1:2379".parse().expect("addr"));
    assert_eq!(c.listen_peer, "127.0.0.1:2380".parse().expect("addr"));
    assert_eq!(c.advertise_client_urls, ["http://127.0.0.1:2379"]);
    assert_eq!(c.advertise_peer_urls, ["http://127.0.0.1:2380"]);
    assert_eq!(
        c.initial_cluster,
        BTreeMap::from([(
            "default".to_owned(),
            vec!["http://127.0.0.1:2380".to_owned()]
        )])
    );
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.election_timeout, Duration::from_millis(1000));
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(c.snapshot_count, 100_000);
    assert_eq!(c.snapshot_log_percent, 50);
    assert_eq!(c.read_mode, ReadMode::ReadIndex);
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
    assert_eq!(c.max_watchers_per_stream, 100_000);
    assert_eq!(c.log_level, "warn");
    let members = c.initial_members().expect("members");
    assert_eq!(members.len(), 1);
    let (id, m) = members.iter().next().expect("one member");
    assert_eq!(*id, c.member_id());
    assert_eq!(m.peer_addr, c.listen_peer);
}

#[test]
fn data_dir_default_follows_name() {
    let args = ServeArgs {
        name: Some("a".into()),
        ..Default::default()
    };
    let c = args.resolve_with(no_env).expect("config");
    assert_eq!(c.data_dir, PathBuf::from("a.raftkv"));
    assert_eq!(c.initial_cluster.keys().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn precedence_flag_env_file_default() {
    let file = file_with("name = \"file\"\nsnapshot_count = 3\n");
    let path = file.path().to_path_buf();
    let env = env_of(&[("RAFTKV_NAME", "env"), ("RAFTKV_SNAPSHOT_COUNT", "2")]);
    let all = ServeArgs {
        name: Some("flag".into()),
        snapshot_count: Some(1),
        config: Some(path.clone()),
        ..Default::default()
    };
    let c = all.resolve_with(&env).expect("flag");
    assert_eq!((c.name.as_str(), c.snapshot_count), ("flag", 1));

    let no_flag = ServeArgs {
        config: Some(path.clone()),
        ..Default::default()
    };
    let c = no_flag.clone().resolve_with(&env).expect("env");
    assert_eq!((c.name.as_str(), c.snapshot_count), ("env", 2));

    let c = no_flag.resolve_with(no_env).expect("file");
    assert_eq!((c.name.as_str(), c.snapshot_count), ("file", 3));

    let c = ServeArgs::default().resolve_with(no_env).expect("default");
    assert_eq!((c.name.as_str(), c.snapshot_count), ("default", 100_000));
}

#[test]
fn config_path_from_env() {
    let file = file_with("name = \"fromfile\"\n");
    let path = file.path().to_string_lossy().into_owned();
    let env = env_of(&[("RAFTKV_CONFIG", &path)]);
    let c = ServeArgs::default().resolve_with(env).expect("config");
    assert_eq!(c.name, "fromfile");
}

#[test]
fn full_toml_file() {
    let file = file_with(
        r#"
name = "b"
data_dir = "/var/lib/raftkv"
listen_client_urls = "http://127.0.0.1:3379"
listen_peer_urls = "127.0.0.1:3380"
advertise_client_urls = "http://127.0.0.1:3379,http://localhost:3379"
initial_advertise_peer_urls = "http://127.0.0.1:3380"
initial_cluster = "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380,c=http://127.0.0.1:4380"
initial_cluster_state = "existing"
initial_cluster_token = "tok"
heartbeat_interval = 50
election_timeout = 500
snapshot_count = 7
max_request_bytes = 2048
max_txn_ops = 4
watch_progress_notify_interval = "1m30s"
max_watchers_per_stream = 9
log_level = "DEBUG"
"#,
    );
    let args = ServeArgs {
        config: Some(file.path().to_path_buf()),
        ..Default::default()
    };
    let c = args.resolve_with(no_env).expect("config");
    assert_eq!(c.name, "b");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/raftkv"));
    assert_eq!(c.listen_peer, "127.0.0.1:3380".parse().expect("addr"));
    assert_eq!(c.advertise_client_urls.len(), 2);
    assert_eq!(c.initial_cluster.len(), 3);
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(c.snapshot_count, 7);
    assert_eq!(c.max_request_bytes, 2048);
    assert_eq!(c.max_txn_ops, 4);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(90));
    assert_eq!(c.max_watchers_per_stream, 9);
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.initial_members().expect("members").len(), 3);
    assert_eq!(
        c.member_id(),
        member_id(&["http://127.0.0.1:3380".to_owned()], "tok")
    );
}

#[test]
fn toml_unknown_key_is_an_error() {
    let file = file_with("name = \"a\"\nheartbeat_intervall = 100\n");
    let args = ServeArgs {
        config: Some(file.path().to_path_buf()),
        ..Default::default()
    };
    let e = resolve_err(args);
    assert!(e.starts_with("--config "), "{e}");
    assert!(e.contains("unknown field `heartbeat_intervall`"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn toml_wrong_type_and_missing_file() {
    let file = file_with("heartbeat_interval = \"fast\"\n");
    let e = resolve_err(ServeArgs {
        config: Some(file.path().to_path_buf()),
        ..Default::default()
    });
    assert!(e.starts_with("--config ") && e.contains("line 1"), "{e}");
    let e = resolve_err(ServeArgs {
        config: Some("/nonexistent/raftkv.toml".into()),
        ..Default::default()
    });
    assert!(
        e.starts_with("--config /nonexistent/raftkv.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn bad_env_value_names_the_variable() {
    let env = env_of(&[("RAFTKV_ELECTION_TIMEOUT", "soon")]);
    let e = ServeArgs::default()
        .resolve_with(env)
        .expect_err("bad env")
        .to_string();
    assert!(
        e.starts_with("RAFTKV_ELECTION_TIMEOUT: invalid value 'soon'"),
        "{e}"
    );
    let env = env_of(&[("RAFTKV_INITIAL_CLUSTER_STATE", "old")]);
    let e = ServeArgs::default()
        .resolve_with(env)
        .expect_err("bad env")
        .to_string();
    assert!(e.contains("'old' is not a cluster state"), "{e}");
}

#[test]
fn clap_flags_and_aliases() {
    let cli = Cli::try_parse_from([
        "raftkv",
        "--name",
        "a",
        "--listen-client",
        "http://127.0.0.1:12379",
        "--listen-peer",
        "http://127.0.0.1:12380",
        "--initial-cluster",
        "a=http://127.0.0.1:12380",
        "--initial-cluster-state",
        "existing",
        "--heartbeat-interval",
        "10",
        "--election-timeout",
        "100",
    ])
    .expect("parse");
    let c = cli.serve.resolve_with(no_env).expect("config");
    assert_eq!(c.listen_client.port(), 12379);
    assert_eq!(c.listen_peer.port(), 12380);
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert_eq!(c.election_ticks(), 10);

    let cli =
        Cli::try_parse_from(["raftkv", "--listen-client-urls", "127.0.0.1:1"]).expect("parse");
    assert_eq!(cli.serve.listen_client_urls.as_deref(), Some("127.0.0.1:1"));
    assert!(Cli::try_parse_from(["raftkv", "--initial-cluster-state", "old"]).is_err());
}

#[test]
fn every_flag_has_its_env_var() {
    let cmd = Cli::command();
    let mut n = 0;
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" {
            continue;
        }
        let want = env_var(id);
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(want.as_str()),
            "{id}"
        );
        n += 1;
    }
    assert_eq!(n, 21);
}

#[test]
fn validation_messages() {
    let cases: Vec<(ServeArgs, &str)> = vec![
        (
            ServeArgs {
                name: Some(String::new()),
                ..Default::default()
            },
            "--name: must not be empty",
        ),
        (
            ServeArgs {
                heartbeat_interval: Some(0),
                ..Default::default()
            },
            "--heartbeat-interval: must be at least 1 ms",
        ),
        (
            ServeArgs {
                heartbeat_interval: Some(100),
                election_timeout: Some(499),
                ..Default::default()
            },
            "--election-timeout: 499 ms is less than 5 x --heartbeat-interval (100 ms); use at least 500 ms",
        ),
        (
            ServeArgs {
                election_timeout: Some(60_000),
                ..Default::default()
            },
            "--election-timeout: 60000 ms is more than the maximum 50000 ms",
        ),
        (
            ServeArgs {
                snapshot_log_percent: Some(1001),
                ..Default::default()
            },
            "--snapshot-log-percent: 1001 is more than the maximum 1000",
        ),
        (
            ServeArgs {
                max_request_bytes: Some(1023),
                ..Default::default()
            },
            "--max-request-bytes: 1023 is outside 1024 (1 KiB) to 67108864 (64 MiB)",
        ),
        (
            ServeArgs {
                max_request_bytes: Some(64 * 1024 * 1024 + 1),
                ..Default::default()
            },
            "--max-request-bytes: 67108865 is outside 1024 (1 KiB) to 67108864 (64 MiB)",
        ),
        (
            ServeArgs {
                max_txn_ops: Some(0),
                ..Default::default()
            },
            "--max-txn-ops: must be at least 1",
        ),
        (
            ServeArgs {
                snapshot_count: Some(0),
                ..Default::default()
            },
            "--snapshot-count: must be at least 1",
        ),
        (
            ServeArgs {
                log_level: Some("verbose".into()),
                ..Default::default()
            },
            "--log-level: 'verbose' is not one of error, warn, info, debug, trace (or a list of target=level directives, e.g. warn,raft=debug)",
        ),
        (
            ServeArgs {
                log_level: Some("warn,raft=loud".into()),
                ..Default::default()
            },
            "--log-level: 'warn,raft=loud' is not one of error, warn, info, debug, trace (or a list of target=level directives, e.g. warn,raft=debug)",
        ),
        (
            ServeArgs {
                initial_cluster_token: Some(String::new()),
                ..Default::default()
            },
            "--initial-cluster-token: must not be empty",
        ),
        (
            ServeArgs {
                listen_client_urls: Some("http://127.0.0.1:2379,http://127.0.0.1:22379".into()),
                ..Default::default()
            },
            "--listen-client-urls: exactly one URL is supported for now, got 2 (http://127.0.0.1:2379,http://127.0.0.1:22379)",
        ),
        (
            ServeArgs {
                listen_peer_urls: Some("https://127.0.0.1:2380".into()),
                ..Default::default()
            },
            "--listen-peer-urls: 'https://127.0.0.1:2380' uses https, but raftkv has no TLS yet; use http://",
        ),
        (
            ServeArgs {
                listen_client_urls: Some("http://0.0.0.0:2379".into()),
                ..Default::default()
            },
            "--advertise-client-urls: required when --listen-client-urls is http://0.0.0.0:2379 (a wildcard address cannot be dialled)",
        ),
        (
            ServeArgs {
                listen_peer_urls: Some("http://[::]:2380".into()),
                ..Default::default()
            },
            "--initial-advertise-peer-urls: required when --listen-peer-urls is http://[::]:2380 (a wildcard address cannot be dialled)",
        ),
        (
            ServeArgs {
                initial_advertise_peer_urls: Some("http://0.0.0.0:2380".into()),
                ..Default::default()
            },
            "--initial-advertise-peer-urls: http://0.0.0.0:2380 is a wildcard address, which cannot be dialled; advertise a reachable address",
        ),
        (
            ServeArgs {
                name: Some("d".into()),
                initial_cluster: Some(three()),
                ..Default::default()
            },
            "--initial-cluster: member 'd' is missing (it lists a, b, c; check --name)",
        ),
        (
            ServeArgs {
                name: Some("a".into()),
                initial_cluster: Some(three()),
                initial_advertise_peer_urls: Some("http://127.0.0.1:3380".into()),
                ..Default::default()
            },
            "--initial-cluster: member 'a' has http://127.0.0.1:2380 but --initial-advertise-peer-urls is http://127.0.0.1:3380",
        ),
        (
            ServeArgs {
                name: Some("a".into()),
                initial_cluster: Some("a=http://127.0.0.1:2380,b=http://127.0.0.1:2380".into()),
                ..Default::default()
            },
            "--initial-cluster: http://127.0.0.1:2380 is listed for both 'a' and 'b'",
        ),
        (
            ServeArgs {
                name: Some("a".into()),
                initial_cluster: Some("a=http://127.0.0.1:2380,a=127.0.0.1:2380".into()),
                ..Default::default()
            },
            "--initial-cluster: member 'a' lists http://127.0.0.1:2380 twice",
        ),
        (
            ServeArgs {
                initial_cluster: Some("default=http://127.0.0.1:2380,".into()),
                ..Default::default()
            },
            "--initial-cluster: empty entry in 'default=http://127.0.0.1:2380,' (expected name=url,name=url,...)",
        ),
        (
            ServeArgs {
                initial_cluster: Some("http://127.0.0.1:2380".into()),
                ..Default::default()
            },
            "--initial-cluster: 'http://127.0.0.1:2380' is not name=url",
        ),
        (
            ServeArgs {
                initial_cluster: Some("=http://127.0.0.1:2380".into()),
                ..Default::default()
            },
            "--initial-cluster: '=http://127.0.0.1:2380' has an empty member name",
        ),
        (
            ServeArgs {
                initial_cluster: Some("default=http://127.0.0.1".into()),
                ..Default::default()
            },
            "--initial-cluster: member 'default': 'http://127.0.0.1' has no port (e.g. http://127.0.0.1:2379)",
        ),
        (
            ServeArgs {
                name: Some("a,b".into()),
                ..Default::default()
            },
            "--name: 'a,b' cannot be used (no ',', '=' or surrounding spaces: it must fit in --initial-cluster)",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(resolve_err(args), want);
    }
}

#[test]
fn log_level_accepts_levels_and_directives() {
    for (given, want) in [
        ("INFO", "info"),
        ("trace", "trace"),
        ("warn,raft=debug", "warn,raft=debug"),
        ("server=DEBUG", "server=DEBUG"),
    ] {
        assert_eq!(check_log_level(given), Ok(want.to_owned()), "{given}");
    }
    assert!(check_log_level("raft=").is_err());
    assert!(check_log_level("=debug").is_err());
    assert!(check_log_level("").is_err());
}

#[test]
fn port_zero_only_for_a_single_member() {
    let args = ServeArgs {
        listen_client_urls: Some("http://127.0.0.1:0".into()),
        listen_peer_urls: Some("http://127.0.0.1:0".into()),
        ..Default::default()
    };
    let c = args.resolve_with(no_env).expect("single member on port 0");
    assert_eq!(c.listen_client.port(), 0);
    assert_eq!(c.advertise_client_urls, ["http://127.0.0.1:0"]);
    assert_eq!(c.initial_members().expect("members").len(), 1);

    let args = ServeArgs {
        name: Some("a".into()),
        listen_peer_urls: Some("http://127.0.0.1:0".into()),
        initial_cluster: Some("a=http://127.0.0.1:0,b=http://127.0.0.1:3380".into()),
        ..Default::default()
    };
    assert_eq!(
        resolve_err(args),
        "--initial-cluster: member 'a' has http://127.0.0.1:0, but other members cannot dial port 0 (it only suits a single-member cluster)"
    );
}

#[test]
fn existing_member_must_be_listed_too() {
    let args = ServeArgs {
        name: Some("d".into()),
        initial_cluster: Some(three()),
        initial_cluster_state: Some(ClusterState::Existing),
        ..Default::default()
    };
    assert!(resolve_err(args).contains("member 'd' is missing"));
}

#[test]
fn multi_url_member_compares_as_set() {
    let args = ServeArgs {
        name: Some("a".into()),
        initial_cluster: Some(
            "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380,a=http://localhost:2380".into(),
        ),
        initial_advertise_peer_urls: Some("http://localhost:2380, http://127.0.0.1:2380".into()),
        listen_peer_urls: Some("http://0.0.0.0:2380".into()),
        advertise_client_urls: Some("http://127.0.0.1:2379".into()),
        listen_client_urls: Some("http://0.0.0.0:2379".into()),
        ..Default::default()
    };
    let c = args.resolve_with(no_env).expect("config");
    assert_eq!(c.initial_cluster["a"].len(), 2);
    let members = c.initial_members().expect("members");
    assert_eq!(members[&c.member_id()].name, "a");
    assert_eq!(
        members[&c.member_id()].peer_addr,
        "127.0.0.1:2380".parse().expect("addr")
    );
}

#[test]
fn member_id_matches_etcd() {
    assert_eq!(
        member_id(&["http://127.0.0.1:22380".to_owned()], "tok1"),
        0xfce4ccdb9802da4a
    );
    assert_eq!(
        member_id(&["http://127.0.0.1:23380".to_owned()], "tok3"),
        0xf7d71a44483b95c5
    );
}

#[test]
fn cluster_id_depends_only_on_token() {
    assert_eq!(cluster_id("etcd-cluster"), cluster_id("etcd-cluster"));
    assert_ne!(cluster_id("etcd-cluster"), cluster_id("etcd-cluster2"));
    assert_ne!(cluster_id("tok1"), 0);
    let a = ServeArgs {
        name: Some("a".into()),
        ..Default::default()
    }
    .resolve_with(no_env)
    .expect("a");
    let b = ServeArgs::default().resolve_with(no_env).expect("b");
    assert_eq!(a.cluster_id(), b.cluster_id());
    assert_eq!(a.cluster_id(), cluster_id("etcd-cluster"));
}

#[test]
fn parse_url_cases() {
    let ok = |u: &str| parse_url(u).expect(u);
    assert_eq!(
        ok("http://127.0.0.1:2379"),
        "127.0.0.1:2379".parse().expect("a")
    );
    assert_eq!(ok("127.0.0.1:2379"), "127.0.0.1:2379".parse().expect("a"));
    assert_eq!(ok("HTTP://10.0.0.1:1"), "10.0.0.1:1".parse().expect("a"));
    assert_eq!(ok("http://[::1]:2380"), "[::1]:2380".parse().expect("a"));
    assert_eq!(
        ok("http://0.0.0.0:2379"),
        "0.0.0.0:2379".parse().expect("a")
    );
    assert_eq!(ok("http://127.0.0.1:0").port(), 0);
    assert!(ok("http://localhost:2379").ip().is_loopback());
    assert_eq!(ok("localhost:7").port(), 7);

    let bad = |u: &str| parse_url(u).expect_err(u).to_string();
    assert_eq!(
        bad("https://127.0.0.1:2379"),
        "'https://127.0.0.1:2379' uses https, but raftkv has no TLS yet; use http://"
    );
    assert_eq!(
        bad("http://127.0.0.1"),
        "'http://127.0.0.1' has no port (e.g. http://127.0.0.1:2379)"
    );
    assert_eq!(
        bad("http://[::1]"),
        "'http://[::1]' has no port (e.g. http://127.0.0.1:2379)"
    );
    assert_eq!(
        bad("http://127.0.0.1:2379/"),
        "'http://127.0.0.1:2379/' must be just http://host:port (found '/')"
    );
    assert_eq!(
        bad("unix://sock:1"),
        "'unix://sock:1' has unsupported scheme 'unix'; use http://host:port"
    );
    assert_eq!(
        bad("http://127.0.0.1:http"),
        "'http://127.0.0.1:http': 'http' is not a port number"
    );
    assert_eq!(
        bad("http://127.0.0.1:70000"),
        "'http://127.0.0.1:70000': '70000' is not a port number"
    );
    assert_eq!(
        bad("http://::1:2379"),
        "'http://::1:2379': an IPv6 host needs brackets, e.g. http://[::1]:2379"
    );
    assert_eq!(bad("http://:2379"), "'http://:2379' has no host");
    assert_eq!(
        bad("http://[zz]:1"),
        "'http://[zz]:1': 'zz' is not an IPv6 address"
    );
    assert!(
        bad("http://no-such-host.invalid:2379").starts_with("'http://no-such-host.invalid:2379': ")
    );
}

proptest! {
    #[test]
    fn member_id_ignores_url_order(ports in proptest::collection::btree_set(1u16..65535, 1..5), token in "[a-z0-9-]{0,12}") {
        let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
        let mut reversed = urls.clone();
        reversed.reverse();
        prop_assert_eq!(member_id(&urls, &token), member_id(&reversed, &token));
        prop_assert_ne!(member_id(&urls, &token), 0);
    }

    #[test]
    fn initial_cluster_round_trips(members in proptest::collection::btree_map("[a-z][a-z0-9]{0,6}", 1u16..2000, 1..6)) {
        let text: Vec<String> = members
            .iter()
            .enumerate()
            .map(|(i, (name, port))| format!("{name}=http://10.0.0.{i}:{port}"))
            .collect();
        let parsed = parse_initial_cluster(&text.join(",")).map_err(|e| TestCaseError::fail(e.0))?;
        prop_assert_eq!(parsed.len(), members.len());
        for (i, (name, port)) in members.iter().enumerate() {
            prop_assert_eq!(&parsed[name], &vec![format!("http://10.0.0.{i}:{port}")]);
        }
    }
}

#[test]
fn watch_flags_take_etcds_names_and_go_durations() {
    let cli = Cli::try_parse_from([
        "raftkv",
        "--experimental-watch-progress-notify-interval",
        "250ms",
        "--max-watchers-per-stream",
        "3",
    ])
    .expect("parse");
    let c = cli.serve.resolve_with(no_env).expect("config");
    assert_eq!(c.watch_progress_notify_interval, Duration::from_millis(250));
    assert_eq!(c.max_watchers_per_stream, 3);

    let c = ServeArgs::default()
        .resolve_with(env_of(&[("RAFTKV_WATCH_PROGRESS_NOTIFY_INTERVAL", "1h2m")]))
        .expect("config");
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(3720));

    for (text, want) in [
        ("10m", 600.0),
        ("1.5s", 1.5),
        ("2h", 7200.0),
        ("500ms", 0.5),
    ] {
        let parsed = super::validate::parse_go_duration(text).expect(text);
        assert_eq!(parsed.as_secs_f64(), want, "{text}");
    }
    for bad in ["", "10", "m", "5x", "1.2.3s", "-1s"] {
        assert!(super::validate::parse_go_duration(bad).is_err(), "{bad}");
    }
    let e = resolve_err(ServeArgs {
        watch_progress_notify_interval: Some("10".into()),
        ..Default::default()
    });
    assert!(e.starts_with("--watch-progress-notify-interval: "), "{e}");
    let e = resolve_err(ServeArgs {
        watch_progress_notify_interval: Some("1ms".into()),
        ..Default::default()
    });
    assert!(e.contains("less than the minimum"), "{e}");
    let e = resolve_err(ServeArgs {
        max_watchers_per_stream: Some(0),
        ..Default::default()
    });
    assert!(e.starts_with("--max-watchers-per-stream: "), "{e}");
}
