//! The index's key: the bytes inline when short, else boxed.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// The longest key kept inline in a [`Key`].
pub(crate) const INLINE_LEN: usize = 22;

/// A key of the index, 24 bytes: up to [`INLINE_LEN`] bytes inline, a longer key in an exact
/// boxed slice of its own.
///
/// Most keys are short (etcd's benchmark writes 14-byte keys), so the index's map holds them
/// in its nodes: no buffer per key, and comparing keys while searching the map reads the node
/// already in cache instead of following a pointer per compare. A frozen copy of the store
/// (a clone) copies them with the nodes.
///
/// Compares, orders and hashes exactly as the `[u8]` it holds (so the map can be searched
/// with `[u8]` keys and bounds, through `Borrow<[u8]>`). A key has one form per content (inline
/// exactly when it fits), and the unused inline bytes are zero.
#[derive(Clone)]
pub(crate) enum Key {
    /// `bytes[..len]`; the rest zero.
    Inline { len: u8, bytes: [u8; INLINE_LEN] },
    /// A key longer than [`INLINE_LEN`].
    Boxed(Box<[u8]>),
}

impl Key {
    /// A key holding a copy of `bytes` (never a slice of a larger buffer, which would stay
    /// alive with it).
    pub(crate) fn new(bytes: &[u8]) -> Key {
        if bytes.len() <= INLINE_LEN {
            let mut inline = [0; INLINE_LEN];
            inline[..bytes.len()].copy_from_slice(bytes);
            Key::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Key::Boxed(bytes.into())
        }
    }

    /// The key's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Boxed(bytes) => bytes,
        }
    }
}

impl Deref for Key {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.as_slice().escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::{INLINE_LEN, Key};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::hash::{BuildHasher, RandomState};
    use std::ops::Bound;

    /// One key per indexed key, in the map's nodes.
    #[test]
    fn a_key_stays_24_bytes() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    #[test]
    fn a_key_is_inline_exactly_when_it_fits() {
        for len in 0..=INLINE_LEN + 2 {
            let bytes = vec![0xa5; len];
            let key = Key::new(&bytes);
            assert_eq!(matches!(key, Key::Inline { .. }), len <= INLINE_LEN);
            assert_eq!(&*key, bytes.as_slice());
            assert_eq!(key.clone(), key);
        }
        assert_eq!(format!("{:?}", Key::new(b"a\n\xff")), "b\"a\\n\\xff\"");
    }

    /// Byte strings of every length around the inline limit, over few distinct bytes so
    /// that equal prefixes (and equal strings) are common.
    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(1u8), Just(0xff), any::<u8>()],
            0..=30,
        )
    }

    fn bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match bound {
            Bound::Included(bytes) => Bound::Included(bytes.as_slice()),
            Bound::Excluded(bytes) => Bound::Excluded(bytes.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }

    fn bounds() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            bytes().prop_map(Bound::Included),
            bytes().prop_map(Bound::Excluded),
            Just(Bound::Unbounded),
        ]
    }

    proptest! {
        #[test]
        fn keys_compare_and_hash_as_their_bytes(a in bytes(), b in bytes()) {
            let (ka, kb) = (Key::new(&a), Key::new(&b));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka.partial_cmp(&kb), a.partial_cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
            let hasher = RandomState::new();
            prop_assert_eq!(hasher.hash_one(&ka), hasher.hash_one(a.as_slice()));
            prop_assert_eq!(&*ka, a.as_slice());
        }

        #[test]
        fn a_map_of_keys_ranges_as_one_of_byte_strings(
            keys in prop::collection::vec(bytes(), 0..40),
            start in bounds(),
            end in bounds(),
        ) {
            let by_key: BTreeMap<Key, usize> =
                keys.iter().enumerate().map(|(i, key)| (Key::new(key), i)).collect();
            let by_vec: BTreeMap<Vec<u8>, usize> =
                keys.iter().enumerate().map(|(i, key)| (key.clone(), i)).collect();
            // BTreeMap::range panics on inverted bounds (or equal ones both excluded).
            let (start, end) = (bound(&start), bound(&end));
            let valid = match (start, end) {
                (Bound::Included(s), Bound::Included(e)) => s <= e,
                (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => s < e,
                _ => true,
            };
            if valid {
                let got: Vec<_> = by_key
                    .range::<[u8], _>((start, end))
                    .map(|(key, i)| (key.to_vec(), *i))
                    .collect();
                let want: Vec<_> = by_vec
                    .range::<[u8], _>((start, end))
                    .map(|(key, i)| (key.clone(), *i))
                    .collect();
                prop_assert_eq!(got, want);
            }
            for key in &keys {
                prop_assert_eq!(by_key.get(key.as_slice()), by_vec.get(key.as_slice()));
            }
        }
    }
}
