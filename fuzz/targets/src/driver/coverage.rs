//! Coverage feedback from SanitizerCoverage, on stable Rust.
//!
//! `make fuzz` builds `fuzz-run` with `-C passes=sancov-module` and LLVM's
//! `-sanitizer-coverage-inline-8bit-counters` and `-sanitizer-coverage-trace-compares`, the
//! instrumentation libFuzzer and AFL++ also use (cargo-afl builds with the same stable flags).
//! Every instrumented module registers its edge counters with
//! [`__sanitizer_cov_8bit_counters_init`]; after each input the driver reads and clears them
//! ([`Counters::collect`]). Comparisons against constants are recorded in a small ring
//! ([`comparison_constants`]) that the mutator uses as a dictionary, so magic numbers and
//! lengths the parsers test for are found without guessing.
//!
//! Built without those flags the callbacks are never called: the driver still runs, as a
//! corpus-seeded random mutator without feedback ([`Counters::enabled`] is false).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The counter regions registered by the instrumented modules: (start, length).
static REGIONS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

const CMP_SLOTS: usize = 1024;
static CMP_POS: AtomicUsize = AtomicUsize::new(0);
/// Each slot holds a compared constant in its low bits and its width in bytes in the top byte.
static CMP_RING: [AtomicU64; CMP_SLOTS] = [const { AtomicU64::new(0) }; CMP_SLOTS];

/// Called by every instrumented module's constructor, before `main`, with its counter array.
///
/// # Safety
/// `start..stop` is the module's counter array, valid for the life of the program (the
/// instrumentation's contract).
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_8bit_counters_init(start: *mut u8, stop: *mut u8) {
    let len = (stop as usize).saturating_sub(start as usize);
    if let Ok(mut regions) = REGIONS.lock() {
        regions.push((start as usize, len));
    }
}

/// 1 while a target runs, 0 otherwise: the driver's own comparisons are not recorded.
static RECORDING: AtomicUsize = AtomicUsize::new(0);

/// Starts or stops recording compared constants (around each input).
pub fn record_comparisons(on: bool) {
    RECORDING.store(usize::from(on), Ordering::Relaxed);
}

/// Records a constant operand. Compare-free on purpose: the instrumentation would turn a
/// comparison in here into a call to itself. Plain loads and stores rather than an atomic
/// increment (a locked instruction per comparison would halve the speed); a lost update between
/// threads only loses a dictionary entry. While not recording, everything lands in slot 0,
/// which is never read.
#[inline(always)]
fn record(value: u64, width: u64) {
    let on = RECORDING.load(Ordering::Relaxed);
    let pos = CMP_POS.load(Ordering::Relaxed);
    CMP_POS.store(pos.wrapping_add(on), Ordering::Relaxed);
    let slot = ((pos & (CMP_SLOTS - 2)) + 1) * on;
    // SAFETY: slot <= CMP_SLOTS - 1 (the mask keeps the sum of the first term below CMP_SLOTS,
    // a power of two); computed without a bounds-check comparison.
    let cell = unsafe { &*CMP_RING.as_ptr().add(slot) };
    cell.store(
        (width << 56) | (value & 0x00ff_ffff_ffff_ffff),
        Ordering::Relaxed,
    );
}

/// Comparisons of two variables: not recorded (loop bounds, mostly), but the symbols must exist.
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_cmp1(_a: u8, _b: u8) {}
/// See [`__sanitizer_cov_trace_cmp1`].
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_cmp2(_a: u16, _b: u16) {}
/// See [`__sanitizer_cov_trace_cmp1`].
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_cmp4(_a: u32, _b: u32) {}
/// See [`__sanitizer_cov_trace_cmp1`].
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_cmp8(_a: u64, _b: u64) {}

/// A comparison with a constant (the first argument is the constant).
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_const_cmp1(constant: u8, _b: u8) {
    record(u64::from(constant), 1);
}
/// See [`__sanitizer_cov_trace_const_cmp1`].
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_const_cmp2(constant: u16, _b: u16) {
    record(u64::from(constant), 2);
}
/// See [`__sanitizer_cov_trace_const_cmp1`].
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_const_cmp4(constant: u32, _b: u32) {
    record(u64::from(constant), 4);
}
/// See [`__sanitizer_cov_trace_const_cmp1`]. Only the low 7 bytes are kept.
#[no_mangle]
pub extern "C" fn __sanitizer_cov_trace_const_cmp8(constant: u64, _b: u64) {
    record(constant, 8);
}

/// A `switch`: `cases[0]` is the number of cases, `cases[1]` the width in bits, then the cases.
/// One case, picked by the ring position, is recorded per call.
///
/// # Safety
/// `cases` points at the instrumentation's case table for this switch.
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_cov_trace_switch(_value: u64, cases: *const u64) {
    // SAFETY: the table starts with its case count and bit width (the instrumentation's layout).
    let (count, bits) = unsafe { (*cases, *cases.add(1)) };
    if count == 0 {
        return;
    }
    let pick = (CMP_POS.load(Ordering::Relaxed) as u64) % count;
    // SAFETY: pick < count, and the table holds `count` cases after the two header words.
    let case = unsafe { *cases.add(2 + pick as usize) };
    record(case, (bits / 8).clamp(1, 8));
}

/// The constants recently compared against, with their width in bytes.
pub fn comparison_constants() -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = CMP_RING[1..]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .filter(|&v| v != 0)
        .map(|v| (v & 0x00ff_ffff_ffff_ffff, (v >> 56) as usize))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The edge counters of every instrumented module, and which (edge, hit-count bucket) pairs
/// inputs have reached so far: libFuzzer's and AFL's notion of a feature.
pub struct Counters {
    regions: Vec<(usize, usize)>,
    seen: Vec<u8>,
}

impl Counters {
    /// The counters registered so far (all of them: registration runs before `main`).
    pub fn new() -> Self {
        let regions = REGIONS.lock().map(|r| r.clone()).unwrap_or_default();
        let total = regions.iter().map(|r| r.1).sum();
        Counters {
            regions,
            seen: vec![0; total],
        }
    }

    /// Whether the binary was built with coverage instrumentation.
    pub fn enabled(&self) -> bool {
        !self.seen.is_empty()
    }

    /// Number of counters (instrumented edges).
    pub fn edges(&self) -> usize {
        self.seen.len()
    }

    /// Forgets which features were seen (a new target starts from nothing).
    pub fn forget(&mut self) {
        self.seen.fill(0);
    }

    /// Zeroes the counters, so that the next [`Counters::collect`] sees only the next input.
    pub fn clear(&self) {
        for &(start, len) in &self.regions {
            // SAFETY: each region is a counter array registered by the instrumentation, valid
            // and writable for the life of the program; only this thread resets it.
            unsafe { std::ptr::write_bytes(start as *mut u8, 0, len) };
        }
    }

    /// Reads and zeroes the counters; returns how many new features the last input reached.
    ///
    /// Most counters are zero, so each block of 64 is read as eight words OR-ed together and
    /// skipped when zero: this function is instrumented too, and every comparison in it costs a
    /// call into the callbacks above, so it makes one per block, not one per counter.
    pub fn collect(&mut self) -> usize {
        let mut new = 0;
        let mut base = 0;
        for r in 0..self.regions.len() {
            let (start, len) = self.regions[r];
            // SAFETY: a registered counter array, valid for the life of the program; u8 and
            // u64 have no invalid bit patterns, so viewing the aligned middle as words is sound.
            let (head, words, _) =
                unsafe { std::slice::from_raw_parts(start as *const u8, len).align_to::<u64>() };
            let (blocks, _) = words.as_chunks::<8>();
            let body = head.len();
            let end = body + blocks.len() * 64;
            new += self.take(start, base, body);
            for (k, b) in blocks.iter().enumerate() {
                if b[0] | b[1] | b[2] | b[3] | b[4] | b[5] | b[6] | b[7] != 0 {
                    new += self.take(start + body + k * 64, base + body + k * 64, 64);
                }
            }
            new += self.take(start + end, base + end, len - end);
            base += len;
        }
        new
    }

    /// Folds `len` counters at address `at` (features from index `index`) into `seen`, zeroing them.
    fn take(&mut self, at: usize, index: usize, len: usize) -> usize {
        // SAFETY: `at..at + len` lies inside a registered counter array (see `collect`); other
        // threads may bump counters concurrently, which only blurs a hit count.
        let counters = unsafe { std::slice::from_raw_parts_mut(at as *mut u8, len) };
        let mut new = 0;
        for (c, s) in counters.iter_mut().zip(&mut self.seen[index..index + len]) {
            if *c != 0 {
                let bit = bucket(*c);
                if *s & bit == 0 {
                    *s |= bit;
                    new += 1;
                }
                *c = 0;
            }
        }
        new
    }

    /// Number of features seen so far.
    pub fn features(&self) -> usize {
        self.seen.iter().map(|s| s.count_ones() as usize).sum()
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// AFL's hit-count buckets: 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+.
fn bucket(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}
