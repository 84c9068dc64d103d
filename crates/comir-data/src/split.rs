use crate::Pair;

/// FNV-1a of the seed and a name: a stable order that does not depend on the standard hasher.
fn key(seed: u64, name: &str) -> u64 {
    seed.to_le_bytes()
        .iter()
        .chain(name.as_bytes())
        .fold(0xcbf29ce484222325, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
}

/// Splits pairs into `(train, validation)` by a seeded hash of their names.
///
/// `round(validation_fraction · n)` pairs go to validation (at least one when the fraction is
/// positive and there are two or more pairs; never all of them). The result depends only on the
/// names and the seed — not on the order the pairs were listed in — and the two sets never share
/// a name. Both are returned sorted by name.
pub fn split_by_name(
    pairs: &[Pair],
    validation_fraction: f64,
    seed: u64,
) -> (Vec<Pair>, Vec<Pair>) {
    let n = pairs.len();
    let mut order: Vec<&Pair> = pairs.iter().collect();
    order.sort_by_key(|p| (key(seed, &p.name), p.name.clone()));
    let mut n_val = (validation_fraction.clamp(0.0, 1.0) * n as f64).round() as usize;
    if validation_fraction > 0.0 && n >= 2 {
        n_val = n_val.clamp(1, n - 1);
    } else {
        n_val = n_val.min(n.saturating_sub(1));
    }
    let mut val: Vec<Pair> = order[..n_val].iter().map(|&p| p.clone()).collect();
    let mut train: Vec<Pair> = order[n_val..].iter().map(|&p| p.clone()).collect();
    val.sort_by(|a, b| a.name.cmp(&b.name));
    train.sort_by(|a, b| a.name.cmp(&b.name));
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::PathBuf;

    fn pairs(n: usize) -> Vec<Pair> {
        (0..n)
            .map(|i| Pair {
                name: format!("img{i:03}.png"),
                a: PathBuf::from(format!("A/img{i:03}.png")),
                b: PathBuf::from(format!("B/img{i:03}.png")),
            })
            .collect()
    }

    #[test]
    fn split_is_disjoint_complete_and_deterministic() {
        let all = pairs(21);
        let (train, val) = split_by_name(&all, 0.25, 7);
        assert_eq!(val.len(), 5);
        assert_eq!(train.len() + val.len(), 21);
        let t: HashSet<_> = train.iter().map(|p| &p.name).collect();
        assert!(val.iter().all(|p| !t.contains(&p.name)));
        // Listing order does not matter; the seed does.
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(
            split_by_name(&reversed, 0.25, 7),
            (train.clone(), val.clone())
        );
        assert_ne!(split_by_name(&all, 0.25, 8).1, val);
    }

    #[test]
    fn tiny_sets_keep_a_training_pair() {
        assert_eq!(split_by_name(&pairs(2), 0.9, 0).0.len(), 1);
        assert_eq!(split_by_name(&pairs(1), 0.5, 0).0.len(), 1);
        assert_eq!(split_by_name(&pairs(10), 0.01, 0).1.len(), 1);
        assert_eq!(split_by_name(&pairs(10), 0.0, 0).1.len(), 0);
    }
}
