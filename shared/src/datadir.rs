//! The local data directory: the embedded database, the local secrets file and the replica
//! id live in it, so it is created readable by its owner only.

use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0700. An existing directory is left as it
/// is, with a warning when other users can read it.
pub fn create_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let existed = dir.is_dir();
    builder.create(dir)?;
    #[cfg(unix)]
    if existed {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %dir.display(), mode = format!("{:o}", mode & 0o777), "the data directory is readable by other users; chmod 700 it");
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_data_directory_and_its_missing_parents_are_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a").join(".jarvis");
        create_private(&dir).expect("created");
        for path in [dir.as_path(), root.path().join("a").as_path()] {
            let mode = std::fs::metadata(path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", path.display());
        }
    }
}
