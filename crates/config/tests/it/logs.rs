//! `[logs]`: per-bot log files.

use crate::{MINIMAL, errors, parse};

#[test]
fn logs_are_off_by_default_and_read_when_set() {
    assert_eq!(parse(MINIMAL).unwrap().logs, None);
    let text = format!("{MINIMAL}[logs]\ndir = \"logs\"\nmax_size_mib = 2\nkeep = 3\n");
    let logs = parse(&text).unwrap().logs.unwrap();
    assert_eq!(logs.dir, std::path::PathBuf::from("logs"));
    assert_eq!((logs.max_bytes, logs.keep), (2 * 1024 * 1024, 3));
    let e = errors(&format!("{MINIMAL}[logs]\nkeep = 0\n"));
    assert!(e.contains("logs.dir: is required"), "{e}");
    assert!(e.contains("logs.keep"), "{e}");
}
