//! Reading a plugin's file: a regular file of bounded size, or a clear refusal.
//!
//! The path comes from the operator's configuration, but what sits there may not be a
//! component: a FIFO blocks a reader forever and `/dev/zero` never ends. Only regular files are
//! read: the path's metadata is checked before it is opened (opening a FIFO blocks until a writer
//! appears) and the opened file's metadata again (the path may have been swapped in between),
//! and at most `max_bytes + 1` bytes are read, so an oversized file is refused without being
//! held in memory. The caller bounds the whole read in time as well.

use std::io::Read;
use std::path::Path;

use super::PluginError;

/// Reads the plugin file at `path`: a regular file of at most `max_bytes` bytes.
///
/// Blocking: call it from `spawn_blocking`.
pub(crate) fn read(path: &Path, max_bytes: u64) -> Result<Vec<u8>, PluginError> {
    let refuse = |message: String| PluginError::Read {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
    check(&meta, max_bytes).map_err(refuse)?;
    let file = std::fs::File::open(path).map_err(|e| refuse(e.to_string()))?;
    let meta = file.metadata().map_err(|e| refuse(e.to_string()))?;
    check(&meta, max_bytes).map_err(refuse)?;
    let mut wasm = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut wasm)
        .map_err(|e| refuse(e.to_string()))?;
    if wasm.len() as u64 > max_bytes {
        return Err(refuse(too_big(max_bytes)));
    }
    Ok(wasm)
}

/// Refuses anything but a regular file within the size cap.
fn check(meta: &std::fs::Metadata, max_bytes: u64) -> Result<(), String> {
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(format!("{what}; a plugin must be a regular .wasm file"));
    }
    if meta.len() > max_bytes {
        return Err(too_big(max_bytes));
    }
    Ok(())
}

fn too_big(max_bytes: u64) -> String {
    format!("larger than runtime.max_plugin_bytes ({max_bytes} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regular file within the cap is read whole; a directory, a device and a file over the
    /// cap are refused, the device without being read.
    #[test]
    fn only_bounded_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read(&file, 10).unwrap(), b"0123456789");
        let over = read(&file, 9).unwrap_err().to_string();
        assert!(over.contains("max_plugin_bytes"), "{over}");
        let d = read(dir.path(), 10).unwrap_err().to_string();
        assert!(d.contains("directory"), "{d}");
        let zero = read(Path::new("/dev/zero"), 10).unwrap_err().to_string();
        assert!(zero.contains("not a regular file"), "{zero}");
    }
}
