//! A small ZIP reader and writer, for moving SAELens directories in and out of the page as one file.
//!
//! Writing stores entries uncompressed (safetensors of f32 barely compress). Reading takes stored
//! and deflated entries, which is what ordinary zip tools write; ZIP64, encryption and multi-disk
//! archives are refused with a plain message.

use crate::error::{Result, SaeplayError};

/// Largest total the reader will unpack: a guard against zip bombs.
pub const MAX_UNPACKED_BYTES: usize = 1 << 30;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;

/// CRC-32 (IEEE), as ZIP stores it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An archive of `(name, bytes)` entries, stored uncompressed.
pub fn write_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    // 1980-01-01 00:00, the earliest DOS date: archives are reproducible.
    let (time, date): (u16, u16) = (0, (1 << 5) | 1);
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let size = data.len() as u32;
        let put_common = |buf: &mut Vec<u8>| {
            buf.extend_from_slice(&20u16.to_le_bytes()); // version needed
            buf.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8 names
            buf.extend_from_slice(&0u16.to_le_bytes()); // stored
            buf.extend_from_slice(&time.to_le_bytes());
            buf.extend_from_slice(&date.to_le_bytes());
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        put_common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        put_common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&END_OF_CENTRAL_DIRECTORY.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn bad(why: impl Into<String>) -> SaeplayError {
    SaeplayError::SaeFile(format!("the zip file {}", why.into()))
}

/// `N` bytes at `at`; offsets come from the archive, so the end is computed checked (a 32-bit
/// offset near `u32::MAX` must not wrap on wasm32).
fn bytes_at<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N]> {
    at.checked_add(N)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("is cut short"))
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16> {
    bytes_at(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32> {
    bytes_at(bytes, at).map(u32::from_le_bytes)
}

/// `at + sizes`, the sum of offsets and lengths read from the archive, refused if it overflows.
fn offset_after(at: usize, sizes: &[usize]) -> Result<usize> {
    sizes
        .iter()
        .try_fold(at, |sum, &n| sum.checked_add(n))
        .ok_or_else(|| bad("is cut short"))
}

/// Deflate's largest possible expansion is about 1,032:1; a little headroom above it.
const MAX_DEFLATE_RATIO: usize = 1100;

/// Whether `bytes` start like a ZIP archive.
pub fn looks_like_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(&LOCAL_HEADER.to_le_bytes())
        || bytes.starts_with(&END_OF_CENTRAL_DIRECTORY.to_le_bytes())
}

/// The files in an archive, folders left out, in the archive's order.
pub fn read_zip(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    // The end record is in the last 22 + 65535 bytes (it may carry a comment).
    let earliest = bytes.len().saturating_sub(22 + 0xFFFF);
    let end = (earliest..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..i + 4] == END_OF_CENTRAL_DIRECTORY.to_le_bytes())
        .ok_or_else(|| bad("is not a zip archive (no end-of-archive record)"))?;
    if u16_at(bytes, end + 4)? != 0 || u16_at(bytes, end + 6)? != 0 {
        return Err(bad("spans several disks, which is not supported"));
    }
    let count = usize::from(u16_at(bytes, end + 10)?);
    let central_offset = u32_at(bytes, end + 16)? as usize;
    if count == 0xFFFF || central_offset == 0xFFFF_FFFF {
        return Err(bad("uses ZIP64, which is not supported"));
    }
    let mut at = central_offset;
    let mut files = Vec::new();
    let mut unpacked = 0usize;
    for _ in 0..count {
        if u32_at(bytes, at)? != CENTRAL_HEADER {
            return Err(bad("has a damaged central directory"));
        }
        let field = |offset: usize| offset_after(at, &[offset]);
        let flags = u16_at(bytes, field(8)?)?;
        let method = u16_at(bytes, field(10)?)?;
        let crc = u32_at(bytes, field(16)?)?;
        let packed_size = u32_at(bytes, field(20)?)? as usize;
        let size = u32_at(bytes, field(24)?)? as usize;
        let name_len = usize::from(u16_at(bytes, field(28)?)?);
        let extra_len = usize::from(u16_at(bytes, field(30)?)?);
        let comment_len = usize::from(u16_at(bytes, field(32)?)?);
        let local = u32_at(bytes, field(42)?)? as usize;
        let name_start = field(46)?;
        let name_bytes = bytes
            .get(name_start..offset_after(name_start, &[name_len])?)
            .ok_or_else(|| bad("is cut short"))?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        at = offset_after(name_start, &[name_len, extra_len, comment_len])?;
        if name.ends_with('/') {
            continue; // a folder
        }
        if flags & 1 != 0 {
            return Err(bad(format!(
                "holds `{name}` encrypted, which is not supported"
            )));
        }
        if packed_size == 0xFFFF_FFFF || size == 0xFFFF_FFFF {
            return Err(bad("uses ZIP64, which is not supported"));
        }
        // Saturating: on wasm32 usize is 32 bits, and a wrapped sum would pass the limit.
        unpacked = unpacked.saturating_add(size);
        if unpacked > MAX_UNPACKED_BYTES {
            return Err(bad(
                "unpacks to more than 1 GiB, which is more than the page takes",
            ));
        }
        // Deflate cannot shrink data more than about 1,032 times: a larger declared ratio is a lie
        // (or a bomb), refused before inflating.
        if method == 8 && size / packed_size.max(1) > MAX_DEFLATE_RATIO {
            return Err(bad(format!(
                "declares `{name}` as {size} bytes from {packed_size} compressed, more than deflate can expand"
            )));
        }
        if files.iter().any(|(seen, _)| *seen == name) {
            return Err(bad(format!("holds `{name}` twice")));
        }
        let cut_short = || bad(format!("is cut short inside `{name}`"));
        if local > bytes.len() || u32_at(bytes, local)? != LOCAL_HEADER {
            return Err(bad(format!("has a damaged entry for `{name}`")));
        }
        let local_name_len = usize::from(u16_at(bytes, offset_after(local, &[26])?)?);
        let local_extra_len = usize::from(u16_at(bytes, offset_after(local, &[28])?)?);
        let data_start =
            offset_after(local, &[30, local_name_len, local_extra_len]).map_err(|_| cut_short())?;
        let data_end = data_start.checked_add(packed_size).ok_or_else(cut_short)?;
        let packed = bytes.get(data_start..data_end).ok_or_else(cut_short)?;
        let data = match method {
            0 => packed.to_vec(),
            8 => miniz_oxide::inflate::decompress_to_vec_with_limit(packed, size)
                .map_err(|_| bad(format!("has a damaged compressed entry `{name}`")))?,
            other => {
                return Err(bad(format!(
                    "compresses `{name}` with method {other}; only stored and deflated entries are supported"
                )));
            }
        };
        if data.len() != size || crc32(&data) != crc {
            return Err(bad(format!(
                "has a damaged entry `{name}` (checksum mismatch)"
            )));
        }
        files.push((name, data));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32/ISO-HDLC check value of "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn written_archives_read_back() {
        let entries = vec![
            ("sae/cfg.json".to_string(), b"{\"d_in\": 4}".to_vec()),
            ("sae/empty".to_string(), Vec::new()),
            (
                "sae/w.bin".to_string(),
                (0..=255u8).cycle().take(5000).collect(),
            ),
        ];
        let zip = write_zip(&entries);
        assert!(looks_like_zip(&zip));
        assert_eq!(read_zip(&zip).unwrap(), entries);
    }

    #[test]
    fn damaged_archives_are_refused_in_words() {
        let zip = write_zip(&[("a.txt".to_string(), b"hello".to_vec())]);
        for cut in [0, 10, zip.len() - 30] {
            let error = read_zip(&zip[..cut]).unwrap_err().to_string();
            assert!(error.contains("zip"), "{error}");
        }
        let mut flipped = zip.clone();
        let at = flipped.windows(5).position(|w| w == b"hello").unwrap();
        flipped[at] ^= 1;
        let error = read_zip(&flipped).unwrap_err().to_string();
        assert!(error.contains("checksum"), "{error}");
        assert!(read_zip(b"not a zip at all, just some text").is_err());
    }

    /// Offsets of the central directory entry's sizes in a one-file archive.
    fn central_entry(zip: &[u8]) -> usize {
        zip.windows(4)
            .position(|w| w == CENTRAL_HEADER.to_le_bytes())
            .unwrap()
    }

    #[test]
    fn lying_sizes_and_duplicate_names_are_refused() {
        // A deflated entry declared far larger than deflate could expand it (a bomb's shape).
        let mut zip = write_zip(&[("w.bin".to_string(), vec![7u8; 4000])]);
        let at = central_entry(&zip);
        zip[at + 10..at + 12].copy_from_slice(&8u16.to_le_bytes()); // method: deflate
        zip[at + 20..at + 24].copy_from_slice(&10u32.to_le_bytes()); // packed: 10 bytes
        zip[at + 24..at + 28].copy_from_slice(&(900_000_000u32).to_le_bytes());
        let error = read_zip(&zip).unwrap_err().to_string();
        assert!(error.contains("more than deflate can expand"), "{error}");
        // Sizes whose sum passes 1 GiB only when added without overflow care.
        let mut zip = write_zip(&[("w.bin".to_string(), vec![7u8; 16])]);
        let at = central_entry(&zip);
        zip[at + 24..at + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let error = read_zip(&zip).unwrap_err().to_string();
        assert!(error.contains("1 GiB"), "{error}");
        // The same name twice.
        let zip = write_zip(&[
            ("sae/cfg.json".to_string(), b"{}".to_vec()),
            ("sae/cfg.json".to_string(), b"{\"d_in\": 1}".to_vec()),
        ]);
        let error = read_zip(&zip).unwrap_err().to_string();
        assert!(error.contains("holds `sae/cfg.json` twice"), "{error}");
    }
}
