//! "Did you mean": the known name closest to a misspelt one.

/// The candidate closest to `word` by edit distance, if close enough to be a likely
/// typo (at most 2 edits, and fewer than half the word).
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = 2.min(word.chars().count().div_ceil(2));
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= limit && *c != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, case-insensitive, over characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let replace = prev[j] + usize::from(ca != cb);
            cur[j + 1] = replace.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested() {
        let keys = ["subscribers", "plans", "default_plan", "timezone"];
        assert_eq!(suggest("subscriber", keys), Some("subscribers"));
        assert_eq!(suggest("defualt_plan", keys), Some("default_plan"));
        assert_eq!(suggest("plan", keys), Some("plans"));
        assert_eq!(suggest("xyz", keys), None);
        assert_eq!(
            suggest("bitorrent", ["bittorrent", "hls"]),
            Some("bittorrent")
        );
        assert_eq!(suggest("P2P", ["p2p"]), Some("p2p"));
    }
}
