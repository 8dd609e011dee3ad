//! Resolving a template's fields with the parameters' values: `${name}` substitution, typed
//! fields, and the contract's parts (workloads, egress, placement constraints, stakeholders),
//! each checked against the contract's ranges with one mistake line per problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use trust::grid::limits::MAX_EGRESS_ENDPOINTS;
use trust::grid::{Constraints, ContractWorkload, Egress, Endpoint, VolumeClaim};
use trust::{Digest, PolicyMember, PublicKey, SignedDocument, SignerPolicy, WorkloadManifest};

use super::params::{cut, literal, Param, ParamType, Value};
use super::{
    format_size, Inputs, RawEndpoint, RawPlacement, RawStakeholders, RawWorkload,
    WORKLOAD_MANIFEST_FILE,
};

/// Instantiation state: the values, and the mistakes found so far.
pub(super) struct Cx<'a> {
    pub(super) params: &'a BTreeMap<String, Param>,
    pub(super) values: &'a BTreeMap<String, Value>,
    pub(super) mistakes: Vec<String>,
}

impl Cx<'_> {
    pub(super) fn say(&mut self, mistake: String) {
        self.mistakes.push(mistake);
    }

    /// Replaces every `${name}` in `text`. `None` (with a mistake) for an unknown name, `None`
    /// silently for a known parameter without a value (already reported).
    fn interpolate(&mut self, at: &str, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        let mut ok = true;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.say(format!("{at}: '${{' without a closing '}}'"));
                return None;
            };
            let name = &after[..end];
            match self.values.get(name) {
                Some(v) => out.push_str(&v.to_string()),
                None if self.params.contains_key(name) => ok = false,
                None => {
                    self.say(format!(
                        "{at}: '${{{}}}' is not a parameter of the template",
                        cut(name)
                    ));
                    ok = false;
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        ok.then_some(out)
    }

    /// A field of type `ty`: exactly `"${name}"` takes that parameter's value (of type `ty`);
    /// another string is substituted, then read as a literal; a TOML int or bool is a literal.
    fn typed(&mut self, at: &str, v: &toml::Value, ty: ParamType) -> Option<Value> {
        if let toml::Value::String(s) = v {
            // A string field takes any parameter, as text.
            if let Some(name) = whole_reference(s).filter(|_| ty != ParamType::String) {
                if let Some(value) = self.values.get(name) {
                    if value.kind() != ty {
                        self.say(format!(
                            "{at}: parameter '{name}' is {}, this field needs {}",
                            value.kind().with_article(),
                            ty.with_article()
                        ));
                        return None;
                    }
                    return Some(value.clone());
                }
            }
            let text = self.interpolate(at, s)?;
            if ty == ParamType::String {
                return Some(Value::String(text));
            }
            return self.literal_or_say(at, ty, &toml::Value::String(text));
        }
        self.literal_or_say(at, ty, v)
    }

    fn literal_or_say(&mut self, at: &str, ty: ParamType, v: &toml::Value) -> Option<Value> {
        literal(ty, v)
            .map_err(|e| self.say(format!("{at}: {e}")))
            .ok()
    }

    fn string(&mut self, at: &str, v: &toml::Value) -> Option<String> {
        match self.typed(at, v, ParamType::String)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An int field within `lo..=hi`.
    fn int<T: TryFrom<i64>>(&mut self, at: &str, v: &toml::Value, lo: i64, hi: i64) -> Option<T> {
        let Value::Int(n) = self.typed(at, v, ParamType::Int)? else {
            return None;
        };
        self.in_range(
            at,
            n,
            lo,
            hi,
            &n.to_string(),
            &lo.to_string(),
            &hi.to_string(),
        )?;
        T::try_from(n).ok()
    }

    /// A size field, in MiB within `lo..=hi`.
    fn size(&mut self, at: &str, v: &toml::Value, lo: u64, hi: u64) -> Option<u64> {
        let Value::Size(n) = self.typed(at, v, ParamType::Size)? else {
            return None;
        };
        let show = |n: u64| format_size(n);
        self.in_range(at, n, lo, hi, &show(n), &show(lo), &show(hi))?;
        Some(n)
    }

    #[allow(clippy::too_many_arguments)]
    fn in_range<N: PartialOrd>(
        &mut self,
        at: &str,
        n: N,
        lo: N,
        hi: N,
        shown: &str,
        lo_shown: &str,
        hi_shown: &str,
    ) -> Option<()> {
        if n < lo || n > hi {
            self.say(format!(
                "{at}: {shown} is out of range ({lo_shown} to {hi_shown})"
            ));
            return None;
        }
        Some(())
    }

    fn key(&mut self, at: &str, v: &toml::Value) -> Option<PublicKey> {
        match self.typed(at, v, ParamType::Key)? {
            Value::Key(k) => Some(k),
            _ => None,
        }
    }

    fn bool(&mut self, at: &str, v: &toml::Value) -> Option<bool> {
        match self.typed(at, v, ParamType::Bool)? {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn name(&mut self, at: &str, v: &toml::Value) -> Option<String> {
        let name = self.string(at, v)?;
        if let Err(reason) = trust::workload::check_name(&name) {
            self.say(format!(
                "{at}: '{}' {reason} (names are 1 to 32 of a-z, 0-9, '-')",
                cut(&name)
            ));
            return None;
        }
        Some(name)
    }

    pub(super) fn workload(
        &mut self,
        index: usize,
        w: &RawWorkload,
        inputs: &Inputs<'_>,
    ) -> Option<ContractWorkload> {
        let name = self.name(&format!("workload {}: name", index + 1), &w.name);
        let label = match &name {
            Some(n) => format!("workload '{n}'"),
            None => format!("workload {}", index + 1),
        };
        let manifest = match (&w.manifest, &w.path) {
            (Some(m), None) => {
                match self.typed(&format!("{label}: manifest"), m, ParamType::Digest) {
                    Some(Value::Digest(d)) => Some(d),
                    _ => None,
                }
            }
            (None, Some(p)) => {
                let at = format!("{label}: path");
                self.string(&at, p)
                    .and_then(|p| self.manifest_digest(&at, &inputs.base_dir.join(p), inputs))
            }
            _ => {
                self.say(format!(
                    "{label}: give exactly one of 'manifest' (a digest) and 'path' (a built workload folder)"
                ));
                None
            }
        };
        let vcpus = self.int::<u8>(&format!("{label}: vcpus"), &w.vcpus, 1, 32);
        let memory = self.size(&format!("{label}: memory"), &w.memory, 32, 65536);
        if w.volumes.len() > trust::limits::MAX_WORKLOAD_VOLUMES {
            self.say(format!(
                "{label}: more than {} volumes",
                trust::limits::MAX_WORKLOAD_VOLUMES
            ));
        }
        let mut volumes = Vec::new();
        let mut volumes_ok = true;
        for (i, v) in w.volumes.iter().enumerate() {
            let at = format!("{label}: volume {}", i + 1);
            let name = self.name(&format!("{at} name"), &v.name);
            let size = self.size(&format!("{at} size"), &v.size, 1, 1_048_576);
            match (name, size.and_then(|s| u32::try_from(s).ok())) {
                (Some(name), Some(size_mib)) => {
                    if volumes.iter().any(|o: &VolumeClaim| o.name == name) {
                        self.say(format!("{label}: two volumes are named '{name}'"));
                    }
                    volumes.push(VolumeClaim { name, size_mib });
                }
                _ => volumes_ok = false,
            }
        }
        let egress = match &w.egress {
            None => Some(Egress::None),
            Some(e) => self.egress(&format!("{label}: egress"), e),
        };
        let mut env = Vec::new();
        let mut env_ok = true;
        for (key, value) in &w.env {
            match self.string(&format!("{label}: env {key}"), value) {
                Some(value) => env.push((key.clone(), value)),
                None => env_ok = false,
            }
        }
        Some(ContractWorkload {
            name: name?,
            manifest: manifest?,
            vcpus: vcpus?,
            memory_mib: u32::try_from(memory?).ok()?,
            volumes: volumes_ok.then_some(volumes)?,
            egress: egress?,
            env: env_ok.then_some(env)?,
        })
    }

    /// The digest of `dir/workload.manifest`, which must be a workload manifest document.
    fn manifest_digest(&mut self, at: &str, dir: &Path, inputs: &Inputs<'_>) -> Option<Digest> {
        let file: PathBuf = dir.join(WORKLOAD_MANIFEST_FILE);
        let bytes = match (inputs.read_file)(&file) {
            Ok(b) => b,
            Err(e) => {
                self.say(format!(
                    "{at}: cannot read {} ({e}); build it first (make workloads) or give 'manifest'",
                    file.display()
                ));
                return None;
            }
        };
        let document = SignedDocument::decode(&bytes);
        let is_workload = document.as_ref().is_ok_and(|d| {
            d.kind() == trust::DocumentKind::WorkloadManifest
                && WorkloadManifest::decode(d.body()).is_ok()
        });
        if !is_workload {
            self.say(format!(
                "{at}: {} is not a signed workload manifest",
                file.display()
            ));
            return None;
        }
        Some(Digest::of(&bytes))
    }

    fn egress(&mut self, at: &str, e: &toml::Value) -> Option<Egress> {
        if let toml::Value::Array(list) = e {
            if list.len() > MAX_EGRESS_ENDPOINTS {
                self.say(format!("{at}: more than {MAX_EGRESS_ENDPOINTS} endpoints"));
                return None;
            }
            let mut endpoints = Vec::new();
            let mut ok = true;
            for (i, item) in list.iter().enumerate() {
                let at = format!("{at} endpoint {}", i + 1);
                let raw: RawEndpoint = match item.clone().try_into() {
                    Ok(r) => r,
                    Err(err) => {
                        self.say(format!(
                            "{at}: write {{ host = \"name\", port = 443 }} ({})",
                            err.message().trim()
                        ));
                        ok = false;
                        continue;
                    }
                };
                let host = self.string(&format!("{at} host"), &raw.host);
                let host = host.filter(|h| match trust::grid::contract::check_host(h) {
                    Ok(()) if h.len() <= trust::grid::limits::MAX_HOST_BYTES => true,
                    Ok(()) => {
                        self.say(format!("{at} host: longer than 253 bytes"));
                        false
                    }
                    Err(reason) => {
                        self.say(format!("{at} host: '{}' {reason}", cut(h)));
                        false
                    }
                });
                let port = match &raw.port {
                    None => Some(0),
                    Some(p) => self.int::<u16>(&format!("{at} port"), p, 1, 65535),
                };
                match (host, port) {
                    (Some(host), Some(port)) => endpoints.push(Endpoint { host, port }),
                    _ => ok = false,
                }
            }
            return ok.then_some(Egress::Only(endpoints));
        }
        match self.string(at, e)?.as_str() {
            "none" => Some(Egress::None),
            "any" => Some(Egress::Any),
            other => {
                self.say(format!(
                    "{at}: '{}' is not \"none\", \"any\" or a list of {{ host, port }}",
                    cut(other)
                ));
                None
            }
        }
    }

    pub(super) fn constraints(&mut self, p: &RawPlacement) -> Option<Constraints> {
        let mut farms = Vec::new();
        let mut ok = true;
        for (i, f) in p.farms.iter().enumerate() {
            match self.key(&format!("placement: farm {}", i + 1), f) {
                Some(k) if farms.contains(&k) => {
                    self.say(format!("placement: farm {} is given twice", i + 1));
                    ok = false;
                }
                Some(k) => farms.push(k),
                None => ok = false,
            }
        }
        let min_memory_mib = match &p.min_memory {
            None => Some(0),
            Some(v) => self.size("placement: min_memory", v, 0, u64::MAX),
        };
        let min_cpus = match &p.min_cpus {
            None => Some(0),
            Some(v) => self.int::<u32>("placement: min_cpus", v, 0, i64::from(u32::MAX)),
        };
        Some(Constraints {
            farms: ok.then_some(farms)?,
            min_memory_mib: min_memory_mib?,
            min_cpus: min_cpus?,
            copies: 1,
        })
    }

    pub(super) fn stakeholders(&mut self, s: &RawStakeholders) -> Option<SignerPolicy> {
        let threshold = self.int::<u32>("stakeholders: threshold", &s.threshold, 1, 1 << 20);
        let mut members = Vec::new();
        let mut ok = true;
        for (i, m) in s.members.iter().enumerate() {
            let at = format!("stakeholders: member {}", i + 1);
            let name = self.string(&format!("{at} name"), &m.name);
            let key = self.key(&format!("{at} key"), &m.key);
            let weight = match &m.weight {
                None => Some(1),
                Some(w) => self.int::<u32>(&format!("{at} weight"), w, 0, 1 << 20),
            };
            let required = match &m.required {
                None => Some(false),
                Some(r) => self.bool(&format!("{at} required"), r),
            };
            match (name, key, weight, required) {
                (Some(name), Some(key), Some(weight), Some(required)) => {
                    members.push(PolicyMember {
                        name,
                        key,
                        weight,
                        required,
                    })
                }
                _ => ok = false,
            }
        }
        let policy = SignerPolicy {
            threshold: threshold?,
            members: ok.then_some(members)?,
        };
        if let Err(e) = policy.validate() {
            self.say(format!("stakeholders: {e}"));
            return None;
        }
        Some(policy)
    }
}

/// `NAME` when `text` is exactly `${NAME}`.
fn whole_reference(text: &str) -> Option<&str> {
    let name = text.strip_prefix("${")?.strip_suffix('}')?;
    (!name.contains(['$', '{', '}'])).then_some(name)
}
