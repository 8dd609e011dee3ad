//! Unified Kernel Images: systemd's EFI stub with the kernel, initramfs, command line and
//! os-release appended as PE sections.
//!
//! We write the sections ourselves rather than running `objcopy` or `ukify` at build time: the
//! rules are few, and doing it here keeps the output a pure function of the inputs. The rules
//! (systemd's UKI specification and what `ukify` does):
//! - the stub's own sections and headers stay where they are; bytes after its last section (its
//!   COFF symbol table, which nothing loads) are dropped and the COFF header's symbol table
//!   pointer and count zeroed, so the file is headers and sections only. Authenticode hashes
//!   the headers, the sections, then whatever follows the last section, and EDK2 (OVMF) finds
//!   "what follows" by adding up section sizes: a gap between sections makes the firmware's
//!   digest differ from the signer's, and a signed UKI would be refused (see [`super::sign`]);
//! - new section data goes after the stub's last section, at `FileAlignment`;
//! - new sections get virtual addresses after the stub's last section, in ascending order, each
//!   at `SectionAlignment`; `VirtualSize` is the payload's exact length (the stub reads
//!   `VirtualSize` bytes), `SizeOfRawData` the length rounded up to `FileAlignment`;
//! - the new section headers must fit between the existing table and `SizeOfHeaders`;
//! - `NumberOfSections`, `SizeOfImage`, `SizeOfInitializedData` and `CheckSum` are updated.
//!
//! The stub is parsed with the `object` crate (bounds-checked); the few header fields we change
//! are written at their fixed offsets in the PE32+ layout.

use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};
use object::LittleEndian as LE;

/// Section characteristics of every added section: initialised, read-only data.
const DATA_SECTION: u32 = pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ;
/// Size of one section header.
const SECTION_HEADER_SIZE: usize = 40;
/// Offsets inside the COFF file header (which follows the 4-byte `PE\0\0` signature).
const COFF_NUMBER_OF_SECTIONS: usize = 4 + 2;
const COFF_POINTER_TO_SYMBOL_TABLE: usize = 4 + 8;
const COFF_NUMBER_OF_SYMBOLS: usize = 4 + 12;
/// Offsets inside the PE32+ optional header (which follows the 20-byte COFF header).
const OPT_HEADER_START: usize = 4 + 20;
const OPT_SIZE_OF_INITIALIZED_DATA: usize = 8;
const OPT_SIZE_OF_IMAGE: usize = 56;
const OPT_CHECKSUM: usize = 64;

/// Why a UKI could not be made from a stub.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// The stub is not a PE32+ image `object` can read.
    #[error("not a PE32+ EFI image")]
    ParseStub(#[source] object::read::Error),
    /// The stub carries an Authenticode signature, which appending sections would break.
    #[error("the stub is signed; use the unsigned linuxx64.efi.stub")]
    SignedStub,
    /// No room in the stub's headers for the new section table entries.
    #[error("the stub's headers have no room for {wanted} more section headers")]
    NoRoomForSections {
        /// How many sections were to be added.
        wanted: usize,
    },
    /// A section name longer than PE's 8 bytes.
    #[error("section name {0:?} is longer than 8 bytes")]
    SectionName(String),
    /// The image would exceed PE's 32-bit sizes.
    #[error("the image would be larger than 4 GiB")]
    TooLarge,
}

/// One section to add: its name (at most 8 bytes, e.g. `.linux`) and contents.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    /// PE section name.
    pub name: &'a str,
    /// The bytes the stub will find at the section's virtual address.
    pub data: &'a [u8],
}

/// The stub's layout facts the writer needs.
struct StubLayout {
    nt_offset: usize,
    section_table_end: usize,
    size_of_headers: usize,
    first_raw_data: usize,
    /// Where the last section's raw data ends (at least the headers' end).
    end_of_sections: usize,
    file_alignment: u32,
    section_alignment: u32,
    next_virtual_address: u64,
    size_of_initialized_data: u32,
}

fn layout(stub: &[u8]) -> Result<StubLayout, UkiError> {
    let file = PeFile64::parse(stub).map_err(UkiError::ParseStub)?;
    let nt = file.nt_headers();
    let opt = nt.optional_header();
    if file
        .data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY)
        .is_some_and(|d| d.size.get(LE) != 0)
    {
        return Err(UkiError::SignedStub);
    }
    let nt_offset = file.dos_header().nt_headers_offset() as usize;
    let sections = file.section_table();
    let section_table_start = nt_offset
        + OPT_HEADER_START
        + usize::from(nt.file_header().size_of_optional_header.get(LE));
    let section_table_end = section_table_start + sections.len() * SECTION_HEADER_SIZE;
    let mut first_raw_data = usize::MAX;
    let mut end_of_sections = opt.size_of_headers() as usize;
    let mut next_virtual_address = u64::from(opt.size_of_image());
    for s in sections.iter() {
        let raw_size = s.size_of_raw_data.get(LE);
        if raw_size != 0 {
            let start = s.pointer_to_raw_data.get(LE) as usize;
            first_raw_data = first_raw_data.min(start);
            end_of_sections = end_of_sections.max(start.saturating_add(raw_size as usize));
        }
        let span = s.virtual_size.get(LE).max(raw_size);
        next_virtual_address =
            next_virtual_address.max(u64::from(s.virtual_address.get(LE)) + u64::from(span));
    }
    Ok(StubLayout {
        nt_offset,
        section_table_end,
        size_of_headers: opt.size_of_headers() as usize,
        first_raw_data,
        end_of_sections: end_of_sections.min(stub.len()),
        file_alignment: opt.file_alignment().max(1),
        section_alignment: opt.section_alignment().max(1),
        next_virtual_address,
        size_of_initialized_data: opt.size_of_initialized_data(),
    })
}

/// Appends `sections`, in order, to the EFI `stub` and returns the new image.
pub fn build(stub: &[u8], sections: &[Section<'_>]) -> Result<Vec<u8>, UkiError> {
    let l = layout(stub)?;
    let table_end = l.section_table_end + sections.len() * SECTION_HEADER_SIZE;
    if table_end > l.size_of_headers || table_end > l.first_raw_data {
        return Err(UkiError::NoRoomForSections {
            wanted: sections.len(),
        });
    }
    let mut out = stub[..l.end_of_sections].to_vec();
    put_u32(&mut out, l.nt_offset + COFF_POINTER_TO_SYMBOL_TABLE, 0);
    put_u32(&mut out, l.nt_offset + COFF_NUMBER_OF_SYMBOLS, 0);
    let file_align = u64::from(l.file_alignment);
    let section_align = u64::from(l.section_alignment);
    let mut raw = align_up(out.len() as u64, file_align);
    let mut va = align_up(l.next_virtual_address, section_align);
    let mut headers = Vec::with_capacity(sections.len() * SECTION_HEADER_SIZE);
    let mut initialized = u64::from(l.size_of_initialized_data);
    for s in sections {
        let name = s.name.as_bytes();
        if name.len() > 8 {
            return Err(UkiError::SectionName(s.name.to_owned()));
        }
        let len = s.data.len() as u64;
        // One zero byte past every payload, in the file and in memory: systemd 252's stub reads
        // `.cmdline` as a C string, relying on the gap before the next section being zero.
        let raw_size = align_up(len + 1, file_align);
        let mut header = [0u8; SECTION_HEADER_SIZE];
        header[..name.len()].copy_from_slice(name);
        put_u32(&mut header, 8, to_u32(len)?); // VirtualSize
        put_u32(&mut header, 12, to_u32(va)?); // VirtualAddress
        put_u32(&mut header, 16, to_u32(raw_size)?); // SizeOfRawData
        put_u32(&mut header, 20, to_u32(raw)?); // PointerToRawData
        put_u32(&mut header, 36, DATA_SECTION); // Characteristics
        headers.extend_from_slice(&header);

        out.resize(to_usize(raw)?, 0);
        out.extend_from_slice(s.data);
        raw += raw_size;
        out.resize(to_usize(raw)?, 0);
        va = align_up(va + len + 1, section_align);
        initialized += raw_size;
    }
    out[l.section_table_end..table_end].copy_from_slice(&headers);

    let coff = l.nt_offset;
    let count = u16::try_from(
        u64::from(u16::from_le_bytes([
            out[coff + COFF_NUMBER_OF_SECTIONS],
            out[coff + COFF_NUMBER_OF_SECTIONS + 1],
        ])) + sections.len() as u64,
    )
    .map_err(|_| UkiError::NoRoomForSections {
        wanted: sections.len(),
    })?;
    out[coff + COFF_NUMBER_OF_SECTIONS..coff + COFF_NUMBER_OF_SECTIONS + 2]
        .copy_from_slice(&count.to_le_bytes());
    let opt = l.nt_offset + OPT_HEADER_START;
    put_u32(&mut out, opt + OPT_SIZE_OF_IMAGE, to_u32(va)?);
    put_u32(
        &mut out,
        opt + OPT_SIZE_OF_INITIALIZED_DATA,
        to_u32(initialized)?,
    );
    let checksum_at = opt + OPT_CHECKSUM;
    put_u32(&mut out, checksum_at, 0);
    let sum = pe_checksum(&out, checksum_at);
    put_u32(&mut out, checksum_at, sum);
    Ok(out)
}

/// The PE image checksum (the algorithm of `imagehlp!CheckSumMappedFile`): the one's-complement
/// style 16-bit sum of the file, skipping the checksum field itself, plus the file length.
pub fn pe_checksum(image: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in image.chunks(2).enumerate() {
        let offset = i * 2;
        if offset >= checksum_at && offset < checksum_at + 4 {
            continue;
        }
        let word = u64::from(chunk[0]) | u64::from(chunk.get(1).copied().unwrap_or(0)) << 8;
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    // Truncation is the algorithm: the folded sum is 16 bits, the length PE's 32.
    #[allow(clippy::cast_possible_truncation)]
    let total = (sum as u32).wrapping_add(image.len() as u32);
    total
}

fn align_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

fn to_u32(value: u64) -> Result<u32, UkiError> {
    u32::try_from(value).map_err(|_| UkiError::TooLarge)
}

fn to_usize(value: u64) -> Result<usize, UkiError> {
    usize::try_from(value).map_err(|_| UkiError::TooLarge)
}

fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSection};

    use super::*;

    /// Debian's systemd-boot-efi stub; tests that need it say so when it is missing.
    const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

    fn stub() -> Vec<u8> {
        std::fs::read(STUB)
            .unwrap_or_else(|e| panic!("{STUB}: {e} (install systemd-boot-efi: `make deps`)"))
    }

    #[test]
    fn sections_follow_the_stub_aligned_and_the_headers_add_up() {
        let stub = stub();
        let cmdline = b"console=ttyS0 quiet";
        let kernel: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let initrd = vec![0x5a; 4097];
        let osrel = b"ID=nullos\n";
        let uki = build(
            &stub,
            &[
                Section {
                    name: ".osrel",
                    data: osrel,
                },
                Section {
                    name: ".cmdline",
                    data: cmdline,
                },
                Section {
                    name: ".initrd",
                    data: &initrd,
                },
                Section {
                    name: ".linux",
                    data: &kernel,
                },
            ],
        )
        .unwrap();

        let before = PeFile64::parse(&*stub).unwrap();
        let after = PeFile64::parse(&*uki).unwrap();
        let opt = after.nt_headers().optional_header();
        let (file_align, section_align) = (opt.file_alignment(), opt.section_alignment());
        // The stub's own sections are untouched.
        let old: Vec<_> = before
            .sections()
            .map(|s| {
                (
                    s.name().unwrap().to_owned(),
                    s.address(),
                    s.data().unwrap().to_vec(),
                )
            })
            .collect();
        let new: Vec<_> = after
            .sections()
            .map(|s| {
                (
                    s.name().unwrap().to_owned(),
                    s.address(),
                    s.data().unwrap().to_vec(),
                )
            })
            .collect();
        assert_eq!(new[..old.len()], old[..]);
        assert_eq!(uki[..0x80], stub[..0x80]);

        let stub_end = before
            .section_table()
            .iter()
            .map(|s| {
                s.virtual_address.get(LE) + s.virtual_size.get(LE).max(s.size_of_raw_data.get(LE))
            })
            .max()
            .unwrap();
        let mut last_end = u64::from(stub_end);
        let stub_sections_end = before
            .section_table()
            .iter()
            .map(|s| u64::from(s.pointer_to_raw_data.get(LE) + s.size_of_raw_data.get(LE)))
            .max()
            .unwrap();
        // No gap between the stub's sections and ours, nothing after the last one: the file
        // is headers and sections only (what Authenticode hashes, as firmware computes it).
        let mut raw_ranges: Vec<(u64, u64)> = after
            .section_table()
            .iter()
            .map(|s| {
                let start = u64::from(s.pointer_to_raw_data.get(LE));
                (start, start + u64::from(s.size_of_raw_data.get(LE)))
            })
            .collect();
        raw_ranges.sort_unstable();
        for pair in raw_ranges.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "gap between sections: {raw_ranges:?}");
        }
        assert_eq!(raw_ranges.last().unwrap().1, uki.len() as u64);
        let coff = 0x80;
        assert_eq!(uki[coff + COFF_POINTER_TO_SYMBOL_TABLE..][..8], [0; 8]);
        for (name, data) in [
            (".osrel", &osrel[..]),
            (".cmdline", &cmdline[..]),
            (".initrd", &initrd[..]),
            (".linux", &kernel[..]),
        ] {
            let s = after
                .section_by_name(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(s.data().unwrap(), data, "{name} contents");
            assert_eq!(s.size(), data.len() as u64, "{name} VirtualSize");
            assert_eq!(s.address() % u64::from(section_align), 0, "{name} address");
            assert!(s.address() > last_end, "{name} overlaps or is out of order");
            let (offset, _) = s.file_range().unwrap();
            assert_eq!(offset % u64::from(file_align), 0, "{name} file offset");
            assert!(offset >= stub_sections_end, "{name} overwrote the stub");
            last_end = s.address() + s.size();
        }
        assert_eq!(after.section_table().len(), old.len() + 4);
        assert!(u64::from(opt.size_of_image()) > last_end);
        assert_eq!(opt.size_of_image() % section_align, 0);
        assert_eq!(uki.len() as u64 % u64::from(file_align), 0);
        let checksum_at = 0x80 + OPT_HEADER_START + OPT_CHECKSUM;
        assert_eq!(opt.check_sum(), pe_checksum(&uki, checksum_at));
        assert_ne!(opt.check_sum(), 0);
    }

    #[test]
    fn checksum_matches_the_stubs_own() {
        // Debian's stub carries a valid checksum; ours must compute the same number.
        let stub = stub();
        let file = PeFile64::parse(&*stub).unwrap();
        let nt = file.dos_header().nt_headers_offset() as usize;
        let at = nt + OPT_HEADER_START + OPT_CHECKSUM;
        assert_eq!(
            pe_checksum(&stub, at),
            file.nt_headers().optional_header().check_sum()
        );
    }

    #[test]
    fn bad_stubs_and_names_are_refused() {
        assert!(matches!(
            build(b"MZ not a PE", &[]),
            Err(UkiError::ParseStub(_))
        ));
        let stub = stub();
        assert!(matches!(
            build(
                &stub,
                &[Section {
                    name: ".toolongname",
                    data: b""
                }]
            ),
            Err(UkiError::SectionName(_))
        ));
        // Far more sections than the header space holds.
        let many = vec![
            Section {
                name: ".x",
                data: b""
            };
            64
        ];
        assert!(matches!(
            build(&stub, &many),
            Err(UkiError::NoRoomForSections { wanted: 64 })
        ));
    }
}
