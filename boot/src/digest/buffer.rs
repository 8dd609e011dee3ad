//! The buffer an artifact is read into: allocated once at its signed size, backed by
//! transparent huge pages where the kernel has them.
//!
//! Filling a buffer of small pages costs a page fault and a page to clear every 4 KiB, which
//! `perf` showed costing more than the copy itself (~7,400 faults for the 29 MB of a dev
//! release); with huge pages it is one clear per 2 MiB and, mapped ahead with
//! `MADV_POPULATE_WRITE`, no faults. Both are advice: on a kernel without huge pages, or before
//! Linux 5.14 (no `MADV_POPULATE_WRITE`), nothing changes but the time.

/// The size of a transparent huge page on x86-64.
const HUGE_PAGE_BYTES: usize = 2 << 20;
/// The size of a page on x86-64.
const PAGE_BYTES: usize = 4096;

/// `len` zero bytes, or `None` without memory for them. The allocator hands large zeroed
/// blocks out as fresh mappings (nothing is written here); their whole 2 MiB pages are advised
/// to be huge pages, and the small pages at either end are mapped now.
pub(super) fn zeroed(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (len > 0).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `len` bytes of alignment
    // 1, which is what a `Vec<u8>` of capacity `len` deallocates with; all `len` bytes are
    // initialized (zero).
    let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
    let (start, end) = span(&bytes);
    let (huge_start, huge_end) = (
        start.next_multiple_of(HUGE_PAGE_BYTES),
        end / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES,
    );
    let (page_start, page_end) = (
        start.next_multiple_of(PAGE_BYTES),
        end / PAGE_BYTES * PAGE_BYTES,
    );
    if huge_end > huge_start {
        advise(huge_start, huge_end, libc::MADV_HUGEPAGE);
        advise(page_start, huge_start, libc::MADV_POPULATE_WRITE);
        advise(huge_end, page_end, libc::MADV_POPULATE_WRITE);
    } else {
        advise(page_start, page_end, libc::MADV_POPULATE_WRITE);
    }
    Some(bytes)
}

/// Pages of a buffer to map ahead of the writes that fill them (on another thread: only
/// addresses are passed, no reference to the bytes).
#[derive(Debug, Clone, Copy)]
pub(super) struct Populate {
    from: usize,
    to: usize,
}

impl Populate {
    /// The whole huge pages of the back half of `bytes` (those filled last).
    pub(super) fn back_half(bytes: &[u8]) -> Populate {
        let (start, end) = span(bytes);
        Populate {
            from: (start + bytes.len() / 2).next_multiple_of(HUGE_PAGE_BYTES),
            to: end / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES,
        }
    }

    /// Maps the pages (zero-filled, as a first write would).
    pub(super) fn run(self) {
        advise(self.from, self.to, libc::MADV_POPULATE_WRITE);
    }
}

/// The addresses `bytes` spans.
fn span(bytes: &[u8]) -> (usize, usize) {
    let start = bytes.as_ptr() as usize;
    (start, start + bytes.len())
}

/// madvise(2) over [from, to), page-aligned addresses inside a buffer of this process, when not
/// empty. Failures are ignored: the advice only saves time.
fn advise(from: usize, to: usize, advice: libc::c_int) {
    if to > from {
        // SAFETY: the range is page-aligned and lies inside a live buffer this process
        // allocated (callers derive it from the buffer's own bounds, rounded inwards);
        // MADV_HUGEPAGE changes how it is backed and MADV_POPULATE_WRITE maps its missing pages
        // as a first write would (present pages are left as they are), so neither reads nor
        // changes a byte, whoever else is writing to it.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, advice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zero_of_the_asked_length_and_their_back_half_is_whole_huge_pages() {
        for len in [
            0,
            1,
            PAGE_BYTES + 3,
            3 * HUGE_PAGE_BYTES + 5,
            9 * HUGE_PAGE_BYTES,
        ] {
            let mut bytes = zeroed(len).unwrap();
            assert_eq!(bytes.len(), len);
            let back = Populate::back_half(&bytes);
            back.run();
            assert!(bytes.iter().all(|b| *b == 0), "{len}");
            let (start, end) = span(&bytes);
            if back.to > back.from {
                assert!(back.from >= start + len / 2 && back.to <= end, "{len}");
                assert_eq!(
                    (back.from % HUGE_PAGE_BYTES, back.to % HUGE_PAGE_BYTES),
                    (0, 0)
                );
            }
            bytes.fill(7);
            assert!(bytes.iter().all(|b| *b == 7));
        }
    }
}
