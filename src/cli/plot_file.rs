//! The `--plot FILE.svg` file of a long CLI run: a temporary file beside it is created before
//! the run, so a path that cannot be written fails at once, and renamed onto FILE only when the
//! run succeeds; a failed run removes the temporary file and leaves whatever FILE was untouched.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct PlotFile {
    path: PathBuf,
    temporary: PathBuf,
    file: Option<std::fs::File>,
}

impl PlotFile {
    /// Creates the temporary file beside `path`; on failure prints `error: --plot PATH: cannot
    /// write it: …` and gives the exit code 2 to return.
    pub fn create(path: &Path) -> Result<Self, ExitCode> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        match std::fs::File::create(&temporary) {
            Ok(file) => Ok(Self {
                path: path.to_path_buf(),
                temporary,
                file: Some(file),
            }),
            Err(err) => Err(Self::refused(path, &err)),
        }
    }

    /// Writes the document and renames it onto the path; on failure the same message and exit
    /// code 2 (and the temporary file is removed).
    pub fn finish(mut self, svg: &str) -> Result<(), ExitCode> {
        let written = match self.file.take() {
            Some(mut file) => file.write_all(svg.as_bytes()).and_then(|()| file.flush()),
            None => Ok(()),
        };
        match written.and_then(|()| std::fs::rename(&self.temporary, &self.path)) {
            Ok(()) => Ok(()),
            Err(err) => Err(Self::refused(&self.path, &err)),
        }
    }

    fn refused(path: &Path, err: &std::io::Error) -> ExitCode {
        eprintln!("error: --plot {}: cannot write it: {err}", path.display());
        ExitCode::from(2)
    }
}

impl Drop for PlotFile {
    fn drop(&mut self) {
        // After a successful rename the temporary name no longer exists.
        let _ = std::fs::remove_file(&self.temporary);
    }
}
