//! Parsing one virtio-blk request out of a descriptor chain: pure, bounded, no file I/O.
//!
//! Layout (virtio 1.2, 5.2.6): a read-only header descriptor (`virtio_blk_outhdr`: type u32,
//! reserved u32, sector u64), data descriptors (write-only for IN and GET_ID, read-only for OUT),
//! and a last write-only descriptor whose first byte receives the status. Linux's `virtio_blk`
//! always gives the header and the status their own descriptors, so we require that too.

use std::ops::Deref;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use super::{SECTOR_SIZE, SEG_MAX};

/// Size of the request header.
pub const HEADER_LEN: u32 = 16;
/// Most descriptors in one request: header, [`SEG_MAX`] data segments, status.
pub const MAX_DESCRIPTORS: usize = SEG_MAX as usize + 2;

/// The operation a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    /// Read sectors into the data buffers.
    In,
    /// Write the data buffers to sectors.
    Out,
    /// Make written data durable.
    Flush,
    /// Write the device serial (up to 20 bytes) into the data buffers.
    GetId,
    /// Anything else: answered with `VIRTIO_BLK_S_UNSUPP`.
    Unsupported(u32),
}

impl RequestType {
    fn from_raw(raw: u32) -> Self {
        match raw {
            VIRTIO_BLK_T_IN => Self::In,
            VIRTIO_BLK_T_OUT => Self::Out,
            VIRTIO_BLK_T_FLUSH => Self::Flush,
            VIRTIO_BLK_T_GET_ID => Self::GetId,
            other => Self::Unsupported(other),
        }
    }
}

/// One guest buffer of a request's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest physical address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// A well-formed request, ready to execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub request_type: RequestType,
    /// First sector (512 bytes each) for IN and OUT.
    pub sector: u64,
    /// The data buffers, in order.
    pub data: Vec<Segment>,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

impl Request {
    /// Total length of the data buffers.
    pub fn data_len(&self) -> u64 {
        self.data.iter().map(|s| u64::from(s.len)).sum()
    }
}

/// What is wrong with a chain.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The chain has no descriptor at all.
    #[error("empty descriptor chain")]
    EmptyChain,
    /// More descriptors than [`MAX_DESCRIPTORS`].
    #[error("descriptor chain longer than {MAX_DESCRIPTORS} descriptors")]
    TooManyDescriptors,
    /// The last descriptor cannot take the status byte.
    #[error("last descriptor is not a writable status byte")]
    BadStatusDescriptor,
    /// Only a status descriptor.
    #[error("no header descriptor")]
    MissingHeader,
    /// The header is in a device-writable descriptor.
    #[error("header descriptor is write-only")]
    WriteOnlyHeader,
    /// The header descriptor is shorter than 16 bytes.
    #[error("header descriptor of {0} bytes is shorter than {HEADER_LEN}")]
    ShortHeader(u32),
    /// The header is not in guest memory.
    #[error("read request header")]
    ReadHeader(#[source] GuestMemoryError),
    /// A data descriptor has the wrong direction for the request type.
    #[error("data descriptor {0} has the wrong direction for {1:?}")]
    DataDirection(usize, RequestType),
    /// IN/OUT data not a whole number of sectors.
    #[error("data length {0} is not a multiple of {SECTOR_SIZE}")]
    UnalignedLength(u64),
}

/// A chain that is not a well-formed request, and where its status byte is, if it has one.
#[derive(Debug, thiserror::Error)]
#[error("malformed block request")]
pub struct BadRequest {
    /// What is wrong.
    #[source]
    pub error: ParseError,
    /// The status byte, when the last descriptor is a usable one: answer `VIRTIO_BLK_S_IOERR`.
    pub status: Option<GuestAddress>,
}

impl Request {
    /// Parses the chain. Reads at most [`MAX_DESCRIPTORS`] + 1 descriptors and the 16-byte header.
    pub fn parse<M, T>(chain: DescriptorChain<M>, mem: &T) -> Result<Self, BadRequest>
    where
        M: Deref,
        M::Target: GuestMemory,
        T: GuestMemory,
    {
        let descriptors: Vec<Descriptor> = chain.take(MAX_DESCRIPTORS + 1).collect();
        if descriptors.len() > MAX_DESCRIPTORS {
            return Err(bad(ParseError::TooManyDescriptors, None));
        }
        let Some((status, rest)) = descriptors.split_last() else {
            return Err(bad(ParseError::EmptyChain, None));
        };
        if !status.is_write_only() || status.len() == 0 {
            return Err(bad(ParseError::BadStatusDescriptor, None));
        }
        let status = status.addr();
        let fail = |error| Err(bad(error, Some(status)));
        let Some((header, data)) = rest.split_first() else {
            return fail(ParseError::MissingHeader);
        };
        if header.is_write_only() {
            return fail(ParseError::WriteOnlyHeader);
        }
        if header.len() < HEADER_LEN {
            return fail(ParseError::ShortHeader(header.len()));
        }
        let mut raw = [0u8; 16];
        if let Err(e) = mem.read_slice(&mut raw, header.addr()) {
            return fail(ParseError::ReadHeader(e));
        }
        let [t0, t1, t2, t3, _, _, _, _, s @ ..] = raw;
        let request_type = RequestType::from_raw(u32::from_le_bytes([t0, t1, t2, t3]));
        let sector = u64::from_le_bytes(s);

        let device_writes = match request_type {
            RequestType::In | RequestType::GetId => Some(true),
            RequestType::Out => Some(false),
            // FLUSH carries no data; unsupported types are answered without looking at it.
            RequestType::Flush | RequestType::Unsupported(_) => None,
        };
        let data = match device_writes {
            None => Vec::new(),
            Some(writes) => {
                if let Some(i) = data.iter().position(|d| d.is_write_only() != writes) {
                    return fail(ParseError::DataDirection(i, request_type));
                }
                data.iter()
                    .map(|d| Segment {
                        addr: d.addr(),
                        len: d.len(),
                    })
                    .collect()
            }
        };
        let request = Request {
            request_type,
            sector,
            data,
            status,
        };
        if matches!(request_type, RequestType::In | RequestType::Out)
            && request.data_len() % SECTOR_SIZE != 0
        {
            return fail(ParseError::UnalignedLength(request.data_len()));
        }
        Ok(request)
    }
}

fn bad(error: ParseError, status: Option<GuestAddress>) -> BadRequest {
    BadRequest { error, status }
}
