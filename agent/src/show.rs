//! `nullos contract show`: what a contract runs, where it may run, who must sign, who has
//! signed, and whether the stakeholder policy is met; `nullos template show`: a template's
//! parameters. Text for people or JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;
use trust::grid::Egress;

use crate::contract_file::ContractFile;
use crate::template::{format_size, Template};

/// Everything `show` prints, in the shape of its JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The contract id (hex).
    pub contract: String,
    /// The contract version.
    pub version: u64,
    /// BLAKE3 of this version's body: what approvals name.
    pub body: String,
    /// The owner's key line.
    pub owner: String,
    /// What runs.
    pub workloads: Vec<WorkloadSummary>,
    /// What the workloads need together.
    pub resources: ResourceSummary,
    /// Where it may run.
    pub placement: PlacementSummary,
    /// Who must sign, and who has.
    pub stakeholders: StakeholderSummary,
}

/// One workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadSummary {
    /// Name in the contract.
    pub name: String,
    /// BLAKE3 of its signed manifest file.
    pub manifest: String,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Volumes: name and size in MiB.
    pub volumes: Vec<VolumeSummary>,
    /// "none", "any" or "only".
    pub egress: &'static str,
    /// With "only": `host:port` (port 0 = any port).
    pub endpoints: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
}

/// One volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeSummary {
    /// Name.
    pub name: String,
    /// Size in MiB.
    pub size_mib: u32,
}

/// The contract's total needs.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceSummary {
    /// vCPUs.
    pub vcpus: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Volume space in MiB.
    pub disk_mib: u64,
}

/// The placement constraints.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementSummary {
    /// Allowed farms (farmer key lines); empty means any farm.
    pub farms: Vec<String>,
    /// Least memory of a node, in MiB.
    pub min_memory_mib: u64,
    /// Fewest CPUs of a node.
    pub min_cpus: u32,
    /// Copies that run.
    pub copies: u32,
}

/// The stakeholder policy and its state.
#[derive(Debug, Clone, Serialize)]
pub struct StakeholderSummary {
    /// Summed weight needed.
    pub threshold: u32,
    /// The members.
    pub members: Vec<MemberSummary>,
    /// Whether the approvals in the file satisfy the policy.
    pub policy_met: bool,
    /// One line: what is met, or what is missing.
    pub policy: String,
}

/// One stakeholder.
#[derive(Debug, Clone, Serialize)]
pub struct MemberSummary {
    /// Name.
    pub name: String,
    /// Key line.
    pub key: String,
    /// Weight.
    pub weight: u32,
    /// Whether the policy needs this member's approval.
    pub required: bool,
    /// Whether the file holds this member's approval.
    pub approved: bool,
}

impl Summary {
    /// Summarizes a verified contract file.
    pub fn of(file: &ContractFile) -> Summary {
        let c = file.contract();
        let resources = c.resources();
        let approved: Vec<_> = file.approvals().map(|a| a.stakeholder).collect();
        let (policy_met, policy) = match file.policy() {
            Ok(tally) => (
                true,
                format!(
                    "met: weight {} of threshold {} ({})",
                    tally.weight,
                    c.stakeholders.threshold,
                    tally.approvers.join(", ")
                ),
            ),
            Err(e) => (false, format!("not met: {e}")),
        };
        Summary {
            contract: c.id().to_string(),
            version: c.version,
            body: c.body_digest().to_string(),
            owner: c.owner.to_string(),
            workloads: c
                .workloads
                .iter()
                .map(|w| {
                    let (egress, endpoints) = match &w.egress {
                        Egress::None => ("none", vec![]),
                        Egress::Any => ("any", vec![]),
                        Egress::Only(list) => (
                            "only",
                            list.iter()
                                .map(|e| format!("{}:{}", e.host, e.port))
                                .collect(),
                        ),
                    };
                    WorkloadSummary {
                        name: w.name.clone(),
                        manifest: w.manifest.to_string(),
                        vcpus: w.vcpus,
                        memory_mib: w.memory_mib,
                        volumes: w
                            .volumes
                            .iter()
                            .map(|v| VolumeSummary {
                                name: v.name.clone(),
                                size_mib: v.size_mib,
                            })
                            .collect(),
                        egress,
                        endpoints,
                        env: w.env.clone(),
                    }
                })
                .collect(),
            resources: ResourceSummary {
                vcpus: resources.vcpus,
                memory_mib: resources.memory_mib,
                disk_mib: resources.disk_mib,
            },
            placement: PlacementSummary {
                farms: c
                    .constraints
                    .farms
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                min_memory_mib: c.constraints.min_memory_mib,
                min_cpus: c.constraints.min_cpus,
                copies: c.constraints.copies,
            },
            stakeholders: StakeholderSummary {
                threshold: c.stakeholders.threshold,
                members: c
                    .stakeholders
                    .members
                    .iter()
                    .map(|m| MemberSummary {
                        name: m.name.clone(),
                        key: m.key.to_string(),
                        weight: m.weight,
                        required: m.required,
                        approved: approved.contains(&m.key),
                    })
                    .collect(),
                policy_met,
                policy,
            },
        }
    }

    /// The text form, for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "contract {} version {}", self.contract, self.version)?;
        writeln!(out, "owner    {}", self.owner)?;
        writeln!(out, "runs")?;
        for w in &self.workloads {
            writeln!(
                out,
                "  {}: {} vCPU, {}, manifest {}",
                w.name,
                w.vcpus,
                format_size(u64::from(w.memory_mib)),
                w.manifest
            )?;
            for v in &w.volumes {
                writeln!(
                    out,
                    "    volume {} {}",
                    v.name,
                    format_size(u64::from(v.size_mib))
                )?;
            }
            match w.egress {
                "only" => writeln!(out, "    egress only {}", w.endpoints.join(", "))?,
                other => writeln!(out, "    egress {other}")?,
            }
            for (k, v) in &w.env {
                writeln!(out, "    env {k}={v}")?;
            }
        }
        let r = &self.resources;
        writeln!(
            out,
            "  total: {} vCPU, {} memory, {} volumes",
            r.vcpus,
            format_size(r.memory_mib),
            format_size(r.disk_mib)
        )?;
        let p = &self.placement;
        writeln!(out, "may run on")?;
        if p.farms.is_empty() {
            writeln!(out, "  any farm")?;
        } else {
            for f in &p.farms {
                writeln!(out, "  farm {f}")?;
            }
        }
        let mut minimums = Vec::new();
        if p.min_cpus > 0 {
            minimums.push(format!("{} CPUs", p.min_cpus));
        }
        if p.min_memory_mib > 0 {
            minimums.push(format!("{} memory", format_size(p.min_memory_mib)));
        }
        if minimums.is_empty() {
            writeln!(out, "  any node with room for it; {} copy", p.copies)?;
        } else {
            writeln!(
                out,
                "  nodes with at least {}, and room for it; {} copy",
                minimums.join(" and "),
                p.copies
            )?;
        }
        let s = &self.stakeholders;
        writeln!(out, "must be approved by weight {} of", s.threshold)?;
        for m in &s.members {
            writeln!(
                out,
                "  [{}] {} weight {}{}  {}",
                if m.approved { "x" } else { " " },
                m.name,
                m.weight,
                if m.required { " required" } else { "" },
                m.key
            )?;
        }
        writeln!(out, "policy {}", s.policy)
    }
}

/// What `nullos template show` prints: a template's parameters, for the user filling them in.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateSummary {
    /// The template's name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Its parameters, by name.
    pub parameters: Vec<ParamSummary>,
}

/// One parameter.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSummary {
    /// Name (`--set NAME=...`).
    pub name: String,
    /// Type name.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// The default, as text; `None` when the parameter must be set.
    pub default: Option<String>,
    /// Least value.
    pub min: Option<String>,
    /// Greatest value.
    pub max: Option<String>,
    /// Longest string, in bytes.
    pub max_length: Option<u64>,
    /// The only values accepted (empty: any).
    pub allowed: Vec<String>,
    /// What it is for.
    pub description: String,
}

impl TemplateSummary {
    /// Summarizes a template's header and parameters.
    pub fn of(template: &Template) -> TemplateSummary {
        let text = |v: &Option<crate::template::Value>| v.as_ref().map(ToString::to_string);
        TemplateSummary {
            name: template.header.name.clone(),
            description: template.header.description.clone(),
            parameters: template
                .params
                .iter()
                .map(|(name, p)| ParamSummary {
                    name: name.clone(),
                    ty: p.ty.name(),
                    default: text(&p.default),
                    min: text(&p.min),
                    max: text(&p.max),
                    max_length: p.max_length,
                    allowed: p.allowed.iter().map(ToString::to_string).collect(),
                    description: p.description.clone(),
                })
                .collect(),
        }
    }

    /// The text form: one line per parameter, then its description indented.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.name.is_empty() || !self.description.is_empty() {
            let _ = writeln!(out, "{}: {}", self.name, self.description);
        }
        for p in &self.parameters {
            let mut facts = vec![p.ty.to_owned()];
            match &p.default {
                Some(d) => facts.push(format!("default {d}")),
                None => facts.push("required".to_owned()),
            }
            if let Some(v) = &p.min {
                facts.push(format!("min {v}"));
            }
            if let Some(v) = &p.max {
                facts.push(format!("max {v}"));
            }
            if let Some(v) = p.max_length {
                facts.push(format!("at most {v} bytes"));
            }
            if !p.allowed.is_empty() {
                facts.push(format!("one of {}", p.allowed.join(", ")));
            }
            let _ = writeln!(out, "  {} ({})", p.name, facts.join(", "));
            if !p.description.is_empty() {
                let _ = writeln!(out, "      {}", p.description);
            }
        }
        out
    }
}
