//! The `--plot FILE.svg` file of a long CLI run: created before the run so a bad path fails at
//! once, removed again if the run fails, so no empty plot is left behind.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct PlotFile {
    path: PathBuf,
    file: std::fs::File,
    keep: bool,
}

impl PlotFile {
    /// Creates `path`; on failure prints `error: --plot PATH: cannot write it: …` and gives the
    /// exit code 2 to return.
    pub fn create(path: &Path) -> Result<Self, ExitCode> {
        match std::fs::File::create(path) {
            Ok(file) => Ok(Self {
                path: path.to_path_buf(),
                file,
                keep: false,
            }),
            Err(err) => Err(Self::refused(path, &err)),
        }
    }

    /// Writes the document and keeps the file; on failure the same message and exit code 2.
    pub fn finish(mut self, svg: &str) -> Result<(), ExitCode> {
        match self.file.write_all(svg.as_bytes()).and_then(|()| self.file.flush()) {
            Ok(()) => {
                self.keep = true;
                Ok(())
            }
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
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
