//! `make install` puts stripped programs, manual pages and (with KEEP_DEBUG=yes) the debug info
//! where Debian keeps it; `make uninstall` takes them all away again.

use std::path::Path;
use std::process::Command;

#[path = "support/files.rs"]
mod files;
use files::files_under;

fn sections(file: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-SW")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf {}", file.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn make(target: &str, destdir: &Path) {
    let root = env!("CARGO_MANIFEST_DIR");
    // -o build: the binaries under test are this build's, not a fresh release build.
    let status = Command::new("make")
        .current_dir(root)
        .args([
            "-s",
            "-o",
            "build",
            target,
            "KEEP_DEBUG=yes",
            "POSTCONF=false",
        ])
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(concat!("BIN=", env!("CARGO_BIN_EXE_oqmgr")))
        .arg(concat!("CTL_BIN=", env!("CARGO_BIN_EXE_oqmgrctl")))
        .status()
        .unwrap();
    assert!(status.success(), "make {target}");
}

#[test]
fn installed_programs_are_stripped_and_their_debug_info_kept_apart() {
    let dest = tempfile::tempdir().unwrap();
    make("install", dest.path());
    let daemon = dest.path().join("usr/lib/postfix/sbin/oqmgr");
    let ctl = dest.path().join("usr/sbin/oqmgrctl");
    for program in [&daemon, &ctl] {
        let s = sections(program);
        assert!(s.contains(".text"), "{s}");
        // (.debug_gdb_scripts, which rustc puts in the loaded image, may stay.)
        for debug in [".debug_info", ".debug_line", ".debug_str"] {
            assert!(!s.contains(debug), "{} keeps {debug}", program.display());
        }
        assert!(
            !s.contains(".symtab"),
            "{} keeps its symbol table",
            program.display()
        );
        assert!(
            s.contains(".note.gnu.build-id"),
            "the build id links the debug file"
        );
    }
    assert!(dest
        .path()
        .join("usr/local/share/man/man8/oqmgr.8")
        .is_file());
    assert!(dest
        .path()
        .join("usr/local/share/man/man1/oqmgrctl.1")
        .is_file());
    let debug: Vec<_> = files_under(&dest.path().join("usr/lib/debug/.build-id"));
    assert_eq!(debug.len(), 2, "{debug:?}");
    for file in &debug {
        assert!(file.extension().is_some_and(|e| e == "debug"));
        assert!(sections(file).contains(".debug_info"), "{}", file.display());
    }

    make("uninstall", dest.path());
    assert_eq!(files_under(dest.path()), Vec::<std::path::PathBuf>::new());
}
