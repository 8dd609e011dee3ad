//! Signer policies: who must sign a document, and how much signing is enough.
//!
//! A policy is a list of members (name, public key, weight, `required` flag) and a threshold. A
//! document satisfies it when every required member has a valid signature on it and the weights of
//! the distinct members with valid signatures add up to at least the threshold. Signatures by
//! keys outside the policy, and repeated signatures by one member, add nothing.
//!
//! # Text format
//!
//! ```text
//! nullos-signer-policy v1
//! # release keys of the core team
//! threshold 2
//! member alice weight=1 required nullos-ed25519 <64 hex>
//! member bob weight=1 nullos-ed25519 <64 hex>
//! member carol nullos-ed25519 <64 hex>
//! ```
//!
//! - line 1 is exactly `nullos-signer-policy v1`;
//! - `threshold <n>` exactly once (n ≥ 1, a decimal u32);
//! - `member <name> [weight=<n>] [required] <public key line>`, one per member: the options may
//!   come in any order, each at most once; `weight` defaults to 1 (0 is allowed: a required
//!   member who must sign but adds no weight); the key is the one-line public key form of
//!   [`crate::keys`];
//! - names are 1–64 characters from `A-Z a-z 0-9 . _ - @`, unique within the policy;
//! - blank lines and lines starting with `#` are ignored; lines may end in `\n` or `\r\n`;
//! - the text is at most 16 KiB and has at most 32 members.
//!
//! A policy must be usable to be accepted ([`SignerPolicy::validate`]): at least one member, a
//! threshold of at least 1 that the members' total weight can reach, no key or name twice.
//!
//! # Binary format
//!
//! Postcard, at most 8 KiB: format version (varint u32, = 1), threshold (varint u32), member
//! count (varint, ≤ 32), then per member: name (varint length ≤ 64 + UTF-8), key (32 raw bytes),
//! weight (varint u32), required (one byte, 0 or 1). Nothing may follow.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;

use thiserror::Error;

use crate::keys::{KeyError, PublicKey};
use crate::limits::{
    DecodeError, Reader, Writer, MAX_MEMBER_NAME_BYTES, MAX_POLICY_BYTES, MAX_POLICY_MEMBERS,
    MAX_POLICY_TEXT_BYTES,
};

/// The first line of a signer policy text file.
pub const POLICY_HEADER: &str = "nullos-signer-policy v1";
/// Version of the binary policy format this build writes and reads.
pub const POLICY_FORMAT: u32 = 1;

/// One member of a signer policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMember {
    /// Name used in messages; unique within the policy.
    pub name: String,
    /// The member's public key; unique within the policy.
    pub key: PublicKey,
    /// What the member's valid signature adds toward the threshold.
    pub weight: u32,
    /// Whether a document without this member's valid signature is refused.
    pub required: bool,
}

/// Who must sign, and how much signing is enough. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerPolicy {
    /// Summed weight of distinct valid signers needed.
    pub threshold: u32,
    /// The members.
    pub members: Vec<PolicyMember>,
}

/// Why a policy is unusable, or could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// No members: nothing could ever verify.
    #[error("signer policy has no members")]
    NoMembers,
    /// More members than the limit.
    #[error("signer policy has {count} members, over the limit of {max}")]
    TooManyMembers {
        /// Members found.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// Threshold 0 would accept documents with no signature at all.
    #[error("signer policy threshold is 0, which would accept unsigned documents")]
    ZeroThreshold,
    /// The threshold exceeds what all members together weigh.
    #[error("signer policy threshold {threshold} is above the members' total weight {total}")]
    Unreachable {
        /// The threshold.
        threshold: u32,
        /// Sum of all weights.
        total: u64,
    },
    /// A member name is empty, too long, or has characters outside the allowed set.
    #[error("signer policy member name '{name}' is invalid: use 1-64 characters from A-Z a-z 0-9 . _ - @")]
    BadName {
        /// The name (cut to 64 characters).
        name: String,
    },
    /// Two members share a name.
    #[error("signer policy has two members named '{name}'")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// Two members share a key.
    #[error("signer policy members '{first}' and '{second}' have the same key {key}")]
    DuplicateKey {
        /// The earlier member.
        first: String,
        /// The later member.
        second: String,
        /// The shared key, shortened.
        key: String,
    },
    /// The binary policy could not be decoded.
    #[error("signer policy could not be decoded")]
    Decode(#[source] DecodeError),
}

/// Why a policy text file was refused. Line numbers are one-based.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyTextError {
    /// The text is larger than the limit.
    #[error("signer policy text is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Text length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The first line is not the header.
    #[error("signer policy must start with '{POLICY_HEADER}'")]
    Header,
    /// A line starts with an unknown word.
    #[error(
        "signer policy line {line}: unknown directive '{word}' (expected 'threshold' or 'member')"
    )]
    UnknownDirective {
        /// Line number.
        line: usize,
        /// The word (cut to 32 characters).
        word: String,
    },
    /// A threshold line is not `threshold <n>`.
    #[error("signer policy line {line}: expected 'threshold <number>'")]
    Threshold {
        /// Line number.
        line: usize,
    },
    /// A second threshold line.
    #[error("signer policy line {line}: threshold given twice")]
    DuplicateThreshold {
        /// Line number.
        line: usize,
    },
    /// No threshold line.
    #[error("signer policy has no 'threshold' line")]
    MissingThreshold,
    /// A member line does not have the expected shape.
    #[error("signer policy line {line}: expected 'member <name> [weight=<n>] [required] nullos-ed25519 <hex>'")]
    Member {
        /// Line number.
        line: usize,
    },
    /// A member line has an unknown or repeated option, or a bad weight.
    #[error("signer policy line {line}: bad member option '{option}'")]
    MemberOption {
        /// Line number.
        line: usize,
        /// The option (cut to 32 characters).
        option: String,
    },
    /// A member's key does not parse.
    #[error("signer policy line {line}: member key is invalid")]
    MemberKey {
        /// Line number.
        line: usize,
        /// Why the key was refused.
        #[source]
        source: KeyError,
    },
    /// The text parsed, but the policy is unusable.
    #[error("signer policy is invalid")]
    Invalid(#[source] PolicyError),
}

impl SignerPolicy {
    /// The policy "this one key must sign": threshold 1, one required member named `signer`.
    pub fn single(key: PublicKey) -> SignerPolicy {
        SignerPolicy {
            threshold: 1,
            members: alloc::vec![PolicyMember {
                name: String::from("signer"),
                key,
                weight: 1,
                required: true,
            }],
        }
    }

    /// The member holding `key`, if any.
    pub fn member(&self, key: &PublicKey) -> Option<&PolicyMember> {
        self.members.iter().find(|m| &m.key == key)
    }

    /// A fresh count of signers (or approvers) against this policy; see [`Tally`].
    pub fn tally(&self) -> Tally<'_> {
        Tally {
            policy: self,
            counted: alloc::vec![false; self.members.len()],
            weight: 0,
        }
    }

    /// Checks the policy is usable: 1 to 32 members, valid unique names, unique keys, and a
    /// threshold of at least 1 that the total weight reaches.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.members.is_empty() {
            return Err(PolicyError::NoMembers);
        }
        if self.members.len() > MAX_POLICY_MEMBERS {
            return Err(PolicyError::TooManyMembers {
                count: self.members.len(),
                max: MAX_POLICY_MEMBERS,
            });
        }
        if self.threshold == 0 {
            return Err(PolicyError::ZeroThreshold);
        }
        for (i, m) in self.members.iter().enumerate() {
            if !valid_name(&m.name) {
                return Err(PolicyError::BadName {
                    name: m.name.chars().take(64).collect(),
                });
            }
            for earlier in &self.members[..i] {
                if earlier.name == m.name {
                    return Err(PolicyError::DuplicateName {
                        name: m.name.clone(),
                    });
                }
                if earlier.key == m.key {
                    return Err(PolicyError::DuplicateKey {
                        first: earlier.name.clone(),
                        second: m.name.clone(),
                        key: m.key.short(),
                    });
                }
            }
        }
        let total: u64 = self.members.iter().map(|m| u64::from(m.weight)).sum();
        if total < u64::from(self.threshold) {
            return Err(PolicyError::Unreachable {
                threshold: self.threshold,
                total,
            });
        }
        Ok(())
    }

    /// The text form (see the module docs), ending in a newline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = writeln!(out, "{POLICY_HEADER}");
        let _ = writeln!(out, "threshold {}", self.threshold);
        for m in &self.members {
            let required = if m.required { " required" } else { "" };
            let _ = writeln!(
                out,
                "member {} weight={}{required} {}",
                m.name, m.weight, m.key
            );
        }
        out
    }

    /// Reads the text form (see the module docs) and validates the result.
    pub fn from_text(text: &str) -> Result<SignerPolicy, PolicyTextError> {
        if text.len() > MAX_POLICY_TEXT_BYTES {
            return Err(PolicyTextError::TooLarge {
                len: text.len(),
                max: MAX_POLICY_TEXT_BYTES,
            });
        }
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, first)) if first.trim() == POLICY_HEADER => {}
            _ => return Err(PolicyTextError::Header),
        }
        let mut threshold = None;
        let mut members = Vec::new();
        for (line, raw) in lines {
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = content.split_ascii_whitespace().collect();
            let Some(&directive) = words.first() else {
                continue;
            };
            match directive {
                "threshold" => {
                    let [_, n] = words[..] else {
                        return Err(PolicyTextError::Threshold { line });
                    };
                    let n: u32 = n.parse().map_err(|_| PolicyTextError::Threshold { line })?;
                    if threshold.replace(n).is_some() {
                        return Err(PolicyTextError::DuplicateThreshold { line });
                    }
                }
                "member" => {
                    if members.len() == MAX_POLICY_MEMBERS {
                        return Err(PolicyTextError::Invalid(PolicyError::TooManyMembers {
                            count: MAX_POLICY_MEMBERS + 1,
                            max: MAX_POLICY_MEMBERS,
                        }));
                    }
                    members.push(parse_member(line, &words)?);
                }
                other => {
                    return Err(PolicyTextError::UnknownDirective {
                        line,
                        word: other.chars().take(32).collect(),
                    })
                }
            }
        }
        let threshold = threshold.ok_or(PolicyTextError::MissingThreshold)?;
        let policy = SignerPolicy { threshold, members };
        policy.validate().map_err(PolicyTextError::Invalid)?;
        Ok(policy)
    }

    /// The binary (postcard) form; see the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.finish()
    }

    /// Appends the binary form to `w` (a policy embedded in another body, e.g. a contract's
    /// stakeholders).
    pub(crate) fn write(&self, w: &mut Writer) {
        w.put(&POLICY_FORMAT);
        w.put(&self.threshold);
        w.count(self.members.len());
        for m in &self.members {
            w.text(&m.name);
            w.array(m.key.as_bytes());
            w.put(&m.weight);
            w.put(&m.required);
        }
    }

    /// Reads the binary form, with bounded sizes, and validates the result.
    pub fn decode(bytes: &[u8]) -> Result<SignerPolicy, PolicyError> {
        let policy = decode_unchecked(bytes).map_err(PolicyError::Decode)?;
        policy.validate()?;
        Ok(policy)
    }
}

/// What [`Tally::add`] did with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A member counted for the first time: its weight was added.
    Added,
    /// A member already counted: nothing added.
    Duplicate,
    /// Not a member: nothing added.
    Unknown,
}

/// The one count of "who signed" against a policy, shared by signature verification
/// ([`crate::SignedDocument::verify`]) and the control plane's approvals
/// ([`crate::grid::rules::approvals_satisfy`]) so the two cannot drift apart.
///
/// Distinct members add their weight once; unknown keys and repeats add nothing. The policy is
/// met when every *required* member was counted and the weight reaches the threshold: a member
/// who is not required and did not sign fails nothing (the mistake of checking every member).
#[derive(Debug, Clone)]
pub struct Tally<'p> {
    policy: &'p SignerPolicy,
    counted: Vec<bool>,
    weight: u64,
}

impl Tally<'_> {
    /// Counts `key` (already known to have signed or approved validly).
    pub fn add(&mut self, key: &PublicKey) -> Counted {
        let Some(i) = self.policy.members.iter().position(|m| &m.key == key) else {
            return Counted::Unknown;
        };
        if self.counted[i] {
            return Counted::Duplicate;
        }
        self.counted[i] = true;
        self.weight += u64::from(self.policy.members[i].weight);
        Counted::Added
    }

    /// Whether the member at `index` (in policy order) was counted.
    pub fn is_counted(&self, index: usize) -> bool {
        self.counted.get(index).copied().unwrap_or(false)
    }

    /// Summed weight of the distinct members counted.
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// Names of the members counted, in policy order.
    pub fn counted_names(&self) -> Vec<String> {
        self.names_where(|i| self.counted[i])
    }

    /// Names of the required members not counted, in policy order.
    pub fn missing_required(&self) -> Vec<String> {
        self.names_where(|i| self.policy.members[i].required && !self.counted[i])
    }

    /// Every required member counted and the threshold reached.
    pub fn is_met(&self) -> bool {
        self.missing_required().is_empty() && self.weight >= u64::from(self.policy.threshold)
    }

    fn names_where(&self, pick: impl Fn(usize) -> bool) -> Vec<String> {
        (0..self.policy.members.len())
            .filter(|&i| pick(i))
            .map(|i| self.policy.members[i].name.clone())
            .collect()
    }
}

fn decode_unchecked(bytes: &[u8]) -> Result<SignerPolicy, DecodeError> {
    const WHAT: &str = "signer policy";
    let mut r = Reader::new(WHAT, bytes, MAX_POLICY_BYTES, 0)?;
    let policy = read_unchecked(&mut r)?;
    r.finish(WHAT)?;
    Ok(policy)
}

/// Reads the binary form's fields from `r` (bounded, not yet validated).
pub(crate) fn read_unchecked(r: &mut Reader<'_>) -> Result<SignerPolicy, DecodeError> {
    const WHAT: &str = "signer policy";
    let format: u32 = r.take("policy format")?;
    if format != POLICY_FORMAT {
        return Err(DecodeError::UnsupportedFormat {
            what: WHAT,
            found: format,
            supported: POLICY_FORMAT,
        });
    }
    let threshold: u32 = r.take("threshold")?;
    let count = r.count("member count", MAX_POLICY_MEMBERS)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.text("member name", MAX_MEMBER_NAME_BYTES)?.to_string();
        let at = r.position();
        let key = PublicKey::from_bytes(&r.array::<32>("member key")?).map_err(|_| {
            DecodeError::InvalidValue {
                field: "member key",
                at,
                reason: "not a usable ed25519 public key",
            }
        })?;
        let weight: u32 = r.take("member weight")?;
        let required: bool = r.take("member required flag")?;
        members.push(PolicyMember {
            name,
            key,
            weight,
            required,
        });
    }
    Ok(SignerPolicy { threshold, members })
}

/// Parses the words of one `member` line (`words[0] == "member"`).
fn parse_member(line: usize, words: &[&str]) -> Result<PolicyMember, PolicyTextError> {
    // member <name> [options...] nullos-ed25519 <hex>
    let [_, name, options @ .., kind, hex] = words else {
        return Err(PolicyTextError::Member { line });
    };
    let key = PublicKey::from_text(&alloc::format!("{kind} {hex}"))
        .map_err(|source| PolicyTextError::MemberKey { line, source })?;
    let mut weight = None;
    let mut required = false;
    for &option in options {
        let bad = || PolicyTextError::MemberOption {
            line,
            option: option.chars().take(32).collect(),
        };
        if option == "required" {
            if required {
                return Err(bad());
            }
            required = true;
        } else if let Some(n) = option.strip_prefix("weight=") {
            let n: u32 = n.parse().map_err(|_| bad())?;
            if weight.replace(n).is_some() {
                return Err(bad());
            }
        } else {
            return Err(bad());
        }
    }
    Ok(PolicyMember {
        name: (*name).to_string(),
        key,
        weight: weight.unwrap_or(1),
        required,
    })
}

/// 1 to 64 characters from `A-Z a-z 0-9 . _ - @` (so a name is one word on a policy line).
fn valid_name(name: &str) -> bool {
    (1..=MAX_MEMBER_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

#[cfg(test)]
mod tests;
