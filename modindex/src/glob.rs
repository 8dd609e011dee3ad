//! `fnmatch(3)`-style matching (no path semantics) for module alias patterns.
//!
//! Module aliases use `*`, `?` and bracket classes such as `usb:v0BDAp8176d0[0-1]*`. The `glob`
//! and `globset` crates implement path globbing (where `*` stops at `/` or patterns compile to
//! regexes), and `wildmatch` has no classes, so this small matcher is written here. It runs in
//! O(pattern × text) time with the classic single-backtrack-point algorithm, and never recurses.

/// Returns true if `text` matches `pattern`.
///
/// `*` matches any run of characters, `?` any one character, `[abc]`, `[a-z]` and `[!a-z]`
/// (or `[^a-z]`) one character of (not of) the class. A malformed class (no closing `]`) matches
/// the `[` literally, as `fnmatch` does.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where to resume after the most recent `*`: (pattern index after the star, text index).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match class_matches(&p[pi..], t[ti]) {
                ClassMatch::Yes(len) => Some(len),
                ClassMatch::No => None,
                ClassMatch::Malformed => (t[ti] == b'[').then_some(1),
            },
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                Some((star_pi, star_ti)) => {
                    pi = star_pi;
                    ti = star_ti + 1;
                    star = Some((star_pi, star_ti + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

enum ClassMatch {
    /// The class matched; the pattern bytes it spans.
    Yes(usize),
    No,
    Malformed,
}

/// Matches one byte against the bracket class at the start of `p` (`p[0] == b'['`).
fn class_matches(p: &[u8], c: u8) -> ClassMatch {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let Some(&lo) = p.get(i) else {
            return ClassMatch::Malformed;
        };
        if lo == b']' && !first {
            break;
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&hi| hi != b']') {
            let hi = p[i + 2];
            found |= lo <= c && c <= hi;
            i += 3;
        } else {
            found |= lo == c;
            i += 1;
        }
    }
    if found != negate {
        ClassMatch::Yes(i + 1)
    } else {
        ClassMatch::No
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literals_and_wildcards() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abd"));
        assert!(!matches("abc", "abcd"));
        assert!(matches("a*", "a"));
        assert!(matches("a*c", "abbbc"));
        assert!(!matches("a*c", "abbbd"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*", ""));
        assert!(matches("**a**", "xxa"));
    }

    #[test]
    fn classes() {
        assert!(matches("d0[0-1]*", "d01x"));
        assert!(!matches("d0[0-1]*", "d02x"));
        assert!(matches("[!a]", "b"));
        assert!(!matches("[^a]", "a"));
        assert!(matches("[]]", "]"));
        assert!(matches("x[a", "x[a"), "a malformed class matches literally");
    }

    #[test]
    fn real_kernel_aliases() {
        // virtio_net's alias against the modalias of a virtio network device.
        assert!(matches("virtio:d00000001v*", "virtio:d00000001v00001AF4"));
        assert!(!matches("virtio:d00000001v*", "virtio:d00000002v00001AF4"));
        // kvm_amd's CPU-feature alias against a CPU modalias that lists SVM (feature 0x81).
        let cpu = "cpu:type:x86,ven0002fam0019mod0001:feature:,0000,0001,0002,0081,00C0,";
        assert!(matches("cpu:type:x86,ven*fam*mod*:feature:*0081*", cpu));
        assert!(!matches("cpu:type:x86,ven*fam*mod*:feature:*0085*", cpu));
        assert!(matches(
            "pci:v00001AF4d00001000sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
    }
}
