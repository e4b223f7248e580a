//! Kubernetes resource quantities (`250m`, `512Mi`, `1e3`): the one parser behind dbdeploy's
//! flag validation and dbcheck's comparison of usage with limits.

/// A quantity in base units (cores, bytes), or `None` when `text` is not one: an unsigned
/// number with at most one `.`, then nothing, a binary suffix (Ki Mi Gi Ti Pi Ei), a
/// decimal one (n u m k M G T P E) or an exponent (`e3`, `E+2`).
pub fn parse(text: &str) -> Option<f64> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    if !number.chars().any(|c| c.is_ascii_digit()) || number.matches('.').count() > 1 {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    const KI: f64 = 1024.0;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => KI,
        "Mi" => KI.powi(2),
        "Gi" => KI.powi(3),
        "Ti" => KI.powi(4),
        "Pi" => KI.powi(5),
        "Ei" => KI.powi(6),
        _ => 10f64.powi(exponent(suffix)?),
    };
    Some(number * factor)
}

/// `e3`, `E+2`, `e-1`: the decimal exponent.
fn exponent(suffix: &str) -> Option<i32> {
    let digits = suffix.strip_prefix(['e', 'E'])?;
    let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_base_units() {
        assert_eq!(parse("250m"), Some(0.25));
        assert_eq!(parse("1Gi"), Some(1073741824.0));
        assert_eq!(parse("2000000n"), Some(0.002));
        assert_eq!(parse("1.5"), Some(1.5));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("2E+2"), Some(200.0));
        assert_eq!(parse("100k"), Some(100_000.0));
        assert_eq!(parse("0"), Some(0.0));
        for bad in [
            "", "10GB", "ten", "-1", "1.2.3", "Gi", "1 Gi", "1e", "12x", "1e+-3",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
