//! Files the tests write and read: dumps, checksums, directory listings.

use std::path::Path;

/// The names in a directory, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The line `sha256sum` prints for the file (what dbbackup writes to FILE.sha256).
pub fn sha256_line(file: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(file).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}  {}\n", file.file_name().unwrap().to_string_lossy())
}

/// Writes FILE.sha256 to match the file as it is now.
pub fn write_checksum(file: &Path) {
    std::fs::write(format!("{}.sha256", file.display()), sha256_line(file)).unwrap();
}

/// The text inside a gzip file, invalid UTF-8 replaced.
pub fn gunzip(file: &Path) -> String {
    let mut sql = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap()),
        &mut sql,
    )
    .unwrap();
    String::from_utf8_lossy(&sql).into_owned()
}
