//! Byte encodings shared by modules that must not depend on each other (engine, backup,
//! render).

/// Lower-case hex: digests, and byte-exact SQL literals (`X'..'`) that need no quoting.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
