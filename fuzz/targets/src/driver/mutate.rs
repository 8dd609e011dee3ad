//! The mutator: libFuzzer's and AFL's classic byte-level mutations, stacked 1 to 5 at a time.

/// A small, fast, seedable generator (xorshift64*); fuzzing needs speed and replayable runs,
/// not cryptographic quality.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.bits() % n as u64) as usize
        }
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Values at the edges of integer ranges and common sizes: where length checks break.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    15,
    16,
    31,
    32,
    63,
    64,
    100,
    127,
    128,
    255,
    256,
    511,
    512,
    1000,
    1024,
    4095,
    4096,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

/// Text that parsers of TOML, key=value lines and addresses react to.
const TOKENS: &[&[u8]] = &[
    b"=",
    b"\n",
    b"\r\n",
    b"\"",
    b"'",
    b"[",
    b"]",
    b"[[",
    b"{",
    b"}",
    b",",
    b".",
    b":",
    b"/",
    b"#",
    b" ",
    b"\t",
    b"\0",
    b"\\",
    b"\\u",
    b"-",
    b"+",
    b"0",
    b"-1",
    b"0x",
    b"255",
    b"256",
    b"4294967296",
    b"18446744073709551616",
    b"1e999",
    b"true",
    b"nan",
    b"inf",
    b"\xff",
    b"\xc3\xa9",
];

/// Inputs and what the mutator may draw from besides the input itself.
pub struct Sources<'a> {
    /// Other inputs, for splicing.
    pub pool: &'a [Vec<u8>],
    /// Constants the code compared against, with their width in bytes.
    pub constants: &'a [(u64, usize)],
    /// The largest input to produce.
    pub max_len: usize,
}

/// Applies 1 to 5 random mutations to `data`.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, src: &Sources<'_>) {
    let rounds = 1 + rng.below(5);
    for _ in 0..rounds {
        mutate_once(rng, data, src);
    }
    data.truncate(src.max_len);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, src: &Sources<'_>) {
    if data.is_empty() {
        let n = 1 + rng.below(16);
        data.extend((0..n).map(|_| rng.bits() as u8));
        return;
    }
    let len = data.len();
    match rng.below(12) {
        // Flip one bit.
        0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // Set one byte.
        1 => {
            let i = rng.below(len);
            data[i] = rng.bits() as u8;
        }
        // Insert bytes (random, or one repeated).
        2 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let byte = rng.bits() as u8;
            let bytes: Vec<u8> = if rng.one_in(2) {
                vec![byte; n]
            } else {
                (0..n).map(|_| rng.bits() as u8).collect()
            };
            data.splice(i..i, bytes);
        }
        // Delete a range.
        3 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(16));
            data.drain(i..i + n);
        }
        // Copy a range over another place, or insert it there.
        4 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(32));
            let chunk = data[from..from + n].to_vec();
            let to = rng.below(len);
            if rng.one_in(2) {
                data.splice(to..to, chunk);
            } else {
                let end = (to + n).min(len);
                data[to..end].copy_from_slice(&chunk[..end - to]);
            }
        }
        // Overwrite with an interesting integer, little or big endian.
        5 => {
            let value = INTERESTING[rng.below(INTERESTING.len())];
            let width = [1, 2, 4, 8][rng.below(4)];
            put_int(rng, data, value, width);
        }
        // Add or subtract a little from an integer.
        6 => {
            let width = [1, 2, 4, 8][rng.below(4)];
            if len >= width {
                let i = rng.below(len - width + 1);
                let mut buf = [0u8; 8];
                buf[..width].copy_from_slice(&data[i..i + width]);
                let delta = 1 + rng.below(16) as u64;
                let v = u64::from_le_bytes(buf);
                let v = if rng.one_in(2) {
                    v.wrapping_add(delta)
                } else {
                    v.wrapping_sub(delta)
                };
                data[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
        }
        // A constant the code compared against.
        7 | 8 => {
            if let Some(&(value, width)) = src.constants.get(rng.below(src.constants.len())) {
                put_int(rng, data, value, width.clamp(1, 8));
            } else {
                data[rng.below(len)] = rng.bits() as u8;
            }
        }
        // A text token, inserted or overwriting.
        9 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            let i = rng.below(len + 1);
            if rng.one_in(2) || i + token.len() > len {
                data.splice(i..i, token.iter().copied());
            } else {
                data[i..i + token.len()].copy_from_slice(token);
            }
        }
        // A decimal number replaced by an interesting one.
        10 => {
            let start = rng.below(len);
            if let Some(p) = data[start..].iter().position(u8::is_ascii_digit) {
                let i = start + p;
                let n = data[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                let value = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(i..i + n, value.to_string().into_bytes());
            } else {
                data[rng.below(len)] = b'0' + rng.below(10) as u8;
            }
        }
        // Splice with another input: our head, its tail.
        _ => {
            if let Some(other) = src.pool.get(rng.below(src.pool.len())) {
                if !other.is_empty() {
                    let cut = rng.below(len);
                    let from = rng.below(other.len());
                    data.truncate(cut);
                    data.extend_from_slice(&other[from..]);
                }
            }
        }
    }
}

/// Writes `value` (little or big endian) over `width` bytes somewhere in `data`, or inserts it.
fn put_int(rng: &mut Rng, data: &mut Vec<u8>, value: u64, width: usize) {
    let le = value.to_le_bytes();
    let be = value.to_be_bytes();
    let bytes: Vec<u8> = if rng.one_in(2) {
        le[..width].to_vec()
    } else {
        be[8 - width..].to_vec()
    };
    let len = data.len();
    if len >= width && !rng.one_in(4) {
        let i = rng.below(len - width + 1);
        data[i..i + width].copy_from_slice(&bytes);
    } else {
        let i = rng.below(len + 1);
        data.splice(i..i, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_max_len_and_change_inputs() {
        let mut rng = Rng::new(7);
        let pool = vec![b"other input".to_vec()];
        let src = Sources {
            pool: &pool,
            constants: &[(0x7472_6976, 4)],
            max_len: 64,
        };
        let mut changed = 0;
        for _ in 0..10_000 {
            let mut data = b"seed = 12\n".to_vec();
            mutate(&mut rng, &mut data, &src);
            assert!(data.len() <= 64);
            changed += usize::from(data != b"seed = 12\n");
        }
        assert!(
            changed > 9_000,
            "only {changed} of 10000 mutations changed the input"
        );
    }
}
