//! A run's share of the databases (`--shard I/N`, `BACKUP_SHARDS` with `JOB_COMPLETION_INDEX`):
//! Kubernetes Indexed Jobs spread one fleet over pods, each taking the databases whose hash
//! falls in its shard.

use sha2::{Digest, Sha256};

use crate::model::spec::DatabaseSpec;

/// A run's share of the databases: those whose hash modulo `count` is `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `I/N` with `0 <= I < N`.
    ///
    /// # Errors
    /// A text that is not of that form, with what is expected.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("\"{text}\" is not a shard (expected I/N with 0 <= I < N, e.g. 0/4)");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard takes `spec`: a stable function of the database alone (engine, host,
    /// port, name), so a database stays in its shard when others are added or removed.
    pub fn takes(&self, spec: &DatabaseSpec) -> bool {
        let key =
            format!("{}\0{}\0{}\0{}", spec.engine.name(), spec.host, spec.effective_port().unwrap_or(0), spec.database);
        let digest = Sha256::digest(key.as_bytes());
        let n = u64::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ]);
        n % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_complete_disjoint_and_stable() {
        let spec = |i: usize| -> DatabaseSpec { format!("postgres=db{}:5432/app_{i}", i % 7).parse().unwrap() };
        let shards: Vec<Shard> = (0..4).map(|i| Shard { index: i, count: 4 }).collect();
        let mut sizes = [0usize; 4];
        for i in 0..10_000 {
            let owners: Vec<usize> = (0..4).filter(|&s| shards[s].takes(&spec(i))).collect();
            assert_eq!(owners.len(), 1, "database {i} is in exactly one shard: {owners:?}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (2300..2700).contains(&n)), "balanced: {sizes:?}");
        // Stable across releases: a change of the hash would move every database to another
        // shard (and another pod) on upgrade. These assignments are pinned.
        let pinned: Vec<u32> = (0..8).map(|i| (0..4).find(|&s| shards[s as usize].takes(&spec(i))).unwrap()).collect();
        assert_eq!(pinned, [1, 3, 2, 0, 3, 3, 2, 1], "the shard assignment changed");
        // The type prefix and a default port written out do not move a database.
        let a: DatabaseSpec = "db1/app".parse().unwrap();
        let b: DatabaseSpec = "postgres=db1:5432/app".parse().unwrap();
        assert_eq!(
            shards.iter().map(|s| s.takes(&a)).collect::<Vec<_>>(),
            shards.iter().map(|s| s.takes(&b)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn shard_texts() {
        assert_eq!(Shard::parse("1/4"), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/3", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
