//! `mom cluster nodes`: prints kwok Node objects (a JSON `v1/List`) for a synthetic layout,
//! ready for `kubectl apply -f -`. Used by `make demo` and the test harness.

use std::process::ExitCode;

use mom::cluster_layout::UniformLayout;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print kwok Nodes with region/zone/rack/hostname labels as a JSON List.
    Nodes(NodesArgs),
}

#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// Number of regions.
    #[arg(long, default_value_t = 2)]
    regions: u32,
    /// Zones in each region.
    #[arg(long, default_value_t = 3)]
    zones_per_region: u32,
    /// Racks in each zone.
    #[arg(long, default_value_t = 1)]
    racks_per_zone: u32,
    /// Nodes in each rack.
    #[arg(long, default_value_t = 1)]
    nodes_per_rack: u32,
    /// Allocatable CPU per node, in cores.
    #[arg(long, default_value_t = 8)]
    cpu: u32,
    /// Allocatable memory per node, in GiB.
    #[arg(long, default_value_t = 32)]
    memory_gib: u32,
    /// Maximum pods per node.
    #[arg(long, default_value_t = 110)]
    pods: u32,
    /// Names of the regions, one per region, comma-separated (default `region-0`, `region-1` …);
    /// zones become `<name>a`, `<name>b` …
    #[arg(long, value_delimiter = ',')]
    region_names: Vec<String>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Nodes(args) => {
            let layout = UniformLayout {
                regions: args.regions,
                zones_per_region: args.zones_per_region,
                racks_per_zone: args.racks_per_zone,
                nodes_per_rack: args.nodes_per_rack,
                cpu_millis: u64::from(args.cpu) * 1000,
                memory_bytes: u64::from(args.memory_gib) << 30,
                pods: args.pods,
            };
            let mut nodes = layout.nodes()?;
            if !args.region_names.is_empty() {
                nodes = mom::cluster_layout::with_region_names(nodes, &args.region_names)?;
            }
            let items: Vec<_> = nodes.iter().map(|n| n.kwok_manifest()).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"apiVersion": "v1", "kind": "List", "items": items}))?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
