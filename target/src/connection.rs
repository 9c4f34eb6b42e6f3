//! Framed iSCSI I/O on one TCP connection: reading a PDU (BHS, AHS, header
//! digest, data segment, padding, data digest) and writing batches of PDUs
//! with one vectored send.
//!
//! The data segment of a PDU is read straight into a buffer the caller
//! chooses (for Data-Out and immediate data: the command's final write
//! buffer), so payload bytes are copied once, from the socket to where the
//! SCSI layer reads them.

use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::pdu::{self, BHS_LEN};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("header digest mismatch (got {got:#010x}, computed {computed:#010x})")]
    HeaderDigest { got: u32, computed: u32 },
    #[error("data digest mismatch (got {got:#010x}, computed {computed:#010x})")]
    DataDigest { got: u32, computed: u32 },
    #[error("data segment of {len} bytes exceeds the limit of {limit}")]
    DataTooLong { len: usize, limit: usize },
    #[error("AHS of {0} bytes is not allowed here")]
    AhsTooLong(usize),
    #[error("timed out waiting for the peer")]
    Timeout,
}

/// Digest settings of a connection (off until login negotiates them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

/// The header part of a received PDU: BHS plus any AHS.
#[derive(Debug, Clone)]
pub struct Header {
    pub bhs: [u8; BHS_LEN],
    pub ahs: Bytes,
    pub data_len: usize,
}

/// Largest AHS accepted (extended CDB up to 260 bytes plus bidi length).
pub const MAX_AHS: usize = 512;

/// Reading half of a connection.
pub struct FrameReader<R> {
    inner: BufReader<R>,
    pub digests: Digests,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            digests: Digests::default(),
        }
    }

    /// Reads the next header (BHS, AHS, header digest). The data segment must
    /// then be consumed with [`read_data_into`](Self::read_data_into) or
    /// [`skip_data`](Self::skip_data) before the next header.
    pub async fn read_header(&mut self) -> Result<Header, FrameError> {
        let mut bhs = [0u8; BHS_LEN];
        match self.inner.read_exact(&mut bhs).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
            Err(e) => return Err(e.into()),
        }
        let c = pdu::common(&bhs);
        if c.ahs_len > MAX_AHS {
            return Err(FrameError::AhsTooLong(c.ahs_len));
        }
        let ahs = if c.ahs_len > 0 {
            let mut a = vec![0u8; c.ahs_len];
            self.inner.read_exact(&mut a).await?;
            Bytes::from(a)
        } else {
            Bytes::new()
        };
        if self.digests.header {
            let got = self.inner.read_u32_le().await?;
            let mut crc = crc32c::crc32c(&bhs);
            if !ahs.is_empty() {
                crc = crc32c::crc32c_append(crc, &ahs);
            }
            if got != crc {
                return Err(FrameError::HeaderDigest { got, computed: crc });
            }
        }
        Ok(Header {
            bhs,
            ahs,
            data_len: c.data_len,
        })
    }

    /// Reads a data segment of `buf.len()` bytes straight into `buf`, then
    /// its padding and data digest.
    pub async fn read_data_into(&mut self, buf: &mut [u8]) -> Result<(), FrameError> {
        let len = buf.len();
        self.read_data_into_partial(buf, len).await
    }

    /// Reads the first `buf.len()` bytes of a data segment of `total` bytes
    /// into `buf` and discards the rest, then the padding and the digest
    /// (which covers the whole segment).
    pub async fn read_data_into_partial(
        &mut self,
        buf: &mut [u8],
        total: usize,
    ) -> Result<(), FrameError> {
        debug_assert!(buf.len() <= total);
        self.inner.read_exact(buf).await?;
        let mut crc = if self.digests.data {
            crc32c::crc32c(buf)
        } else {
            0
        };
        let mut left = total.saturating_sub(buf.len());
        if left > 0 {
            // Bytes nobody wants (rare): only then is a scratch chunk zeroed.
            let mut chunk = [0u8; 4096];
            while left > 0 {
                let n = left.min(chunk.len());
                self.inner.read_exact(&mut chunk[..n]).await?;
                if self.digests.data {
                    crc = crc32c::crc32c_append(crc, &chunk[..n]);
                }
                left -= n;
            }
        }
        let pad = pdu::pad_len(total);
        if pad > 0 {
            let mut padding = [0u8; 3];
            self.inner.read_exact(&mut padding[..pad]).await?;
            if self.digests.data {
                crc = crc32c::crc32c_append(crc, &padding[..pad]);
            }
        }
        if self.digests.data && total > 0 {
            let got = self.inner.read_u32_le().await?;
            if got != crc {
                return Err(FrameError::DataDigest { got, computed: crc });
            }
        }
        Ok(())
    }

    /// Whether bytes of a next PDU are already buffered (pipelined
    /// commands): the caller can read the header without waiting.
    pub fn has_buffered(&self) -> bool {
        !self.inner.buffer().is_empty()
    }

    /// Waits until at least one byte is readable; `Closed` at end of stream.
    /// Cancel-safe: nothing is consumed.
    pub async fn wait_readable(&mut self) -> Result<(), FrameError> {
        use tokio::io::AsyncBufReadExt;
        let buf = self.inner.fill_buf().await?;
        if buf.is_empty() {
            return Err(FrameError::Closed);
        }
        Ok(())
    }

    /// Reads a whole data segment into a new buffer (for small control PDUs).
    pub async fn read_data(&mut self, len: usize, limit: usize) -> Result<BytesMut, FrameError> {
        if len > limit {
            return Err(FrameError::DataTooLong { len, limit });
        }
        let mut buf = BytesMut::zeroed(len);
        self.read_data_into(&mut buf).await?;
        Ok(buf)
    }

    /// Discards a data segment (with padding and digest), checking the digest.
    pub async fn skip_data(&mut self, len: usize) -> Result<(), FrameError> {
        self.read_data_into_partial(&mut [], len).await
    }
}

/// One PDU ready to send: its encoded header and data segment.
#[derive(Debug, Clone)]
pub struct OutFrame {
    pub bhs: [u8; BHS_LEN],
    pub data: Bytes,
}

/// Writing half of a connection.
pub struct FrameWriter<W> {
    inner: W,
    pub digests: Digests,
    /// A send that makes no progress for this long fails the connection
    /// (a peer that stopped reading).
    pub send_timeout: Duration,
}

const ZERO_PAD: [u8; 3] = [0; 3];

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner,
            digests: Digests::default(),
            send_timeout: Duration::from_secs(30),
        }
    }

    /// Sends `frames` with as few system calls as possible.
    pub async fn send(&mut self, frames: &[OutFrame]) -> Result<(), FrameError> {
        // Per frame: bhs, hdigest, data, pad, ddigest.
        let mut digests: Vec<([u8; 4], [u8; 4])> = Vec::with_capacity(frames.len());
        for f in frames {
            let h = if self.digests.header {
                crc32c::crc32c(&f.bhs).to_le_bytes()
            } else {
                [0; 4]
            };
            let d = if self.digests.data && !f.data.is_empty() {
                let pad = pdu::pad_len(f.data.len());
                crc32c::crc32c_append(crc32c::crc32c(&f.data), &ZERO_PAD[..pad]).to_le_bytes()
            } else {
                [0; 4]
            };
            digests.push((h, d));
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len() * 5);
        for (f, (h, d)) in frames.iter().zip(digests.iter()) {
            slices.push(IoSlice::new(&f.bhs));
            if self.digests.header {
                slices.push(IoSlice::new(h));
            }
            if !f.data.is_empty() {
                slices.push(IoSlice::new(&f.data));
                let pad = pdu::pad_len(f.data.len());
                if pad > 0 {
                    slices.push(IoSlice::new(&ZERO_PAD[..pad]));
                }
                if self.digests.data {
                    slices.push(IoSlice::new(d));
                }
            }
        }
        let timeout = self.send_timeout;
        match tokio::time::timeout(timeout, write_all_vectored(&mut self.inner, &mut slices)).await
        {
            Ok(r) => r.map_err(FrameError::Io),
            Err(_) => Err(FrameError::Timeout),
        }
    }

    /// Flushes and shuts down the write side.
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.shutdown()).await;
    }
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    // Skip empty slices up front.
    while !slices.is_empty() {
        let n = w.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{InitiatorPdu, NopOut};

    #[tokio::test]
    async fn frames_roundtrip_with_digests() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = FrameWriter::new(a);
        w.digests = Digests {
            header: true,
            data: true,
        };
        let nop = InitiatorPdu::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt: 1,
            ttt: pdu::RESERVED_TAG,
            cmdsn: 1,
            exp_statsn: 0,
        });
        let data = Bytes::from_static(b"hello");
        let bhs = pdu::encode_initiator(&nop, 0, data.len());
        w.send(&[OutFrame {
            bhs,
            data: data.clone(),
        }])
        .await
        .unwrap();
        let mut r = FrameReader::new(b);
        r.digests = w.digests;
        let h = r.read_header().await.unwrap();
        assert_eq!(h.data_len, 5);
        let got = r.read_data(h.data_len, 1024).await.unwrap();
        assert_eq!(&got[..], b"hello");
    }

    #[tokio::test]
    async fn bad_header_digest_is_detected() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let bhs = [0u8; BHS_LEN];
        a.write_all(&bhs).await.unwrap();
        a.write_all(&[1, 2, 3, 4]).await.unwrap();
        let mut r = FrameReader::new(b);
        r.digests.header = true;
        assert!(matches!(
            r.read_header().await,
            Err(FrameError::HeaderDigest { .. })
        ));
    }
}
