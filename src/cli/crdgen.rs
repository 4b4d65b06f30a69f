//! `mom crdgen`: prints the CRDs generated from the Rust types, or writes `crds/<name>.yaml`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one file per CRD into this directory instead of printing a YAML stream.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let crds = mom::operator::crd::all();
    match args.out_dir {
        None => {
            for crd in &crds {
                print!("---\n{}", mom::operator::crd::to_yaml(crd)?);
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let name = crd.metadata.name.clone().unwrap_or_default();
                let path = dir.join(format!("{name}.yaml"));
                std::fs::write(&path, mom::operator::crd::to_yaml(crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
