//! Bounded reads of files a user names (scenarios, `file:` manifest references, captures).
//!
//! A path in a scenario can name anything: `/dev/zero` (endless), a FIFO (blocks until a
//! writer comes, maybe never), a directory, a file that grows while it is read. Every such
//! read goes through [`read_bounded`]: regular files only (checked on the opened file, which
//! is opened non-blocking so that a FIFO swapped in after the check cannot hang the open),
//! and never more than a cap, whatever the file's size says.

use std::io::Read;
use std::path::Path;

/// The most bytes a `file:` manifest reference, or a manifest file given to `verdict check`,
/// may hold (the scenario limit: a manifest is part of a scenario).
pub const MAX_MANIFEST_BYTES: usize = crate::scenario::MAX_SCENARIO_BYTES;

/// What a path that is not a regular file is, in words.
fn kind(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads the regular file at `path`, at most `cap` bytes; `what` names the content in the
/// size error ("scenario", "manifest"). The error is a message without the path (callers
/// put it in their located errors).
pub fn read_bounded(path: &Path, cap: usize, what: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!(
            "{} is {}: only regular files are read",
            path.display(),
            kind(meta.file_type())
        ));
    }
    if meta.len() > cap as u64 {
        return Err(format!(
            "{what} is {} bytes, more than the limit of {cap}",
            meta.len()
        ));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| e.to_string())?;
    // The path may have been replaced between the two looks: trust the opened file.
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!(
            "{} is {}: only regular files are read",
            path.display(),
            kind(meta.file_type())
        ));
    }
    let mut buf = Vec::with_capacity(meta.len().min(cap as u64) as usize);
    file.take(cap as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() > cap {
        return Err(format!("{what} is more than the limit of {cap} bytes"));
    }
    Ok(buf)
}

/// [`read_bounded`], as UTF-8 text.
pub fn read_bounded_string(path: &Path, cap: usize, what: &str) -> Result<String, String> {
    let bytes = read_bounded(path, cap, what)?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{what} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("verdict-fsread-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn regular_files_are_read_up_to_the_cap() {
        let p = tmp("small.yaml");
        std::fs::write(&p, "0123456789").unwrap();
        assert_eq!(read_bounded(&p, 10, "manifest").unwrap(), b"0123456789");
        let e = read_bounded(&p, 9, "manifest").unwrap_err();
        assert!(
            e.contains("manifest is 10 bytes, more than the limit of 9"),
            "{e}"
        );
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        let e = read_bounded_string(&p, 9, "manifest").unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn dev_zero_and_directories_are_refused_at_once() {
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20, "manifest").unwrap_err();
        assert!(e.contains("/dev/zero is a character device"), "{e}");
        let e = read_bounded(&std::env::temp_dir(), 1 << 20, "manifest").unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let p = tmp("fifo");
        let _ = std::fs::remove_file(&p);
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer ever opens it: a blocking read would hang the test.
        let e = read_bounded(&p, 1 << 20, "manifest").unwrap_err();
        assert!(e.contains("is a FIFO: only regular files are read"), "{e}");
        std::fs::remove_file(&p).unwrap();
    }
}
