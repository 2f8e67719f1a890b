//! Consistent hashing (ketama-style ring) to spread sessions over servers.
//!
//! Each server owns [`POINTS_PER_SERVER`] points on a 64-bit ring, placed by
//! SHA-256 of `"<address>#<i>"` (once, when the ring is built); a key belongs
//! to the first point at or after its own position. Adding or removing a
//! server moves only the keys of the arcs it gains or loses, about 1/N of
//! them.
//!
//! A key's position needs no cryptographic hash: store keys are already
//! keyed hashes of random ids. FNV-1a with a 64-bit finaliser spreads them
//! (and any other keys) evenly, costs a few nanoseconds, and is the same in
//! every process and version, as servers sharing a ring require.

use sha2::{Digest, Sha256};

/// Virtual points per server; more points, more even spread.
pub(crate) const POINTS_PER_SERVER: usize = 160;

fn hash64(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes of a 32-byte digest"))
}

/// A key's position: FNV-1a, then MurmurHash3's 64-bit finaliser so every
/// input bit reaches the high bits that order the ring.
fn position(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A ring of servers, identified by their index in the configured list.
#[derive(Debug, Clone)]
pub(crate) struct HashRing {
    points: Vec<(u64, usize)>,
}

impl HashRing {
    /// A ring over `servers` (their names place the points, so a server keeps
    /// its arcs whatever its position in the list).
    pub(crate) fn new<S: AsRef<str>>(servers: &[S]) -> Self {
        let mut points: Vec<(u64, usize)> = servers
            .iter()
            .enumerate()
            .flat_map(|(index, name)| {
                (0..POINTS_PER_SERVER)
                    .map(move |i| (hash64(format!("{}#{i}", name.as_ref()).as_bytes()), index))
            })
            .collect();
        points.sort_unstable();
        HashRing { points }
    }

    /// The index of the server owning `key`.
    pub(crate) fn pick(&self, key: &str) -> usize {
        if self.points.len() <= POINTS_PER_SERVER {
            return 0;
        }
        let h = position(key.as_bytes());
        let at = self.points.partition_point(|(point, _)| *point < h);
        self.points.get(at).unwrap_or(&self.points[0]).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("session-key-{i}")).collect()
    }

    #[test]
    fn spreads_evenly() {
        let servers = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"];
        let ring = HashRing::new(&servers);
        let mut counts = [0usize; 3];
        for key in keys(30_000) {
            counts[ring.pick(&key)] += 1;
        }
        for count in counts {
            // Each server within 20% of its fair share of 10,000.
            assert!((8_000..=12_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn adding_a_server_moves_only_keys_to_it() {
        let three = ["a:1", "b:1", "c:1"];
        let four = ["a:1", "b:1", "c:1", "d:1"];
        let (before, after) = (HashRing::new(&three), HashRing::new(&four));
        let mut moved = 0;
        let all = keys(20_000);
        for key in &all {
            let (x, y) = (before.pick(key), after.pick(key));
            if x != y {
                assert_eq!(y, 3, "a key moved between old servers");
                moved += 1;
            }
        }
        // About a quarter moves to the new server.
        assert!((3_500..=6_500).contains(&moved), "{moved} of 20000 moved");
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let three = ["a:1", "b:1", "c:1"];
        let two = ["a:1", "c:1"];
        let (before, after) = (HashRing::new(&three), HashRing::new(&two));
        for key in keys(20_000) {
            let old = three[before.pick(&key)];
            let new = two[after.pick(&key)];
            if old != "b:1" {
                assert_eq!(old, new, "a key of a remaining server moved");
            }
        }
    }

    #[test]
    fn order_of_the_list_does_not_matter() {
        let a = HashRing::new(&["x:1", "y:1", "z:1"]);
        let b = HashRing::new(&["z:1", "x:1", "y:1"]);
        let names_a = ["x:1", "y:1", "z:1"];
        let names_b = ["z:1", "x:1", "y:1"];
        for key in keys(2_000) {
            assert_eq!(names_a[a.pick(&key)], names_b[b.pick(&key)]);
        }
    }

    #[test]
    fn one_server_takes_everything() {
        let ring = HashRing::new(&["only:1"]);
        assert!(keys(100).iter().all(|k| ring.pick(k) == 0));
    }
}
