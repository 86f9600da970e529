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

/// The file in the data directory holding its replica id.
pub const REPLICA_ID_FILE: &str = "replica-id";

/// This data directory's replica id: generated once (`local-` and 12 random hex digits) and
/// kept in [`REPLICA_ID_FILE`], so two deployments left at the default never mint the same
/// dots or share an audit chain, and a restart keeps its identity.
pub fn replica_id(dir: &Path) -> std::io::Result<String> {
    use std::io::Write;
    create_private(dir)?;
    let path = dir.join(REPLICA_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let mut bytes = [0u8; 6];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| std::io::Error::other("the system's random source failed"))?;
    let id = format!("local-{}", hex::encode(bytes));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    file.write_all(id.as_bytes())?;
    file.sync_all()?;
    Ok(id)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_data_directory_keeps_the_replica_id_it_generated_and_others_differ() {
        let root = tempfile::tempdir().expect("tempdir");
        let first = replica_id(&root.path().join("a")).expect("id");
        assert!(first.starts_with("local-") && first.len() == 18, "{first}");
        assert_eq!(replica_id(&root.path().join("a")).expect("again"), first);
        assert_ne!(replica_id(&root.path().join("b")).expect("other"), first);
    }

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
