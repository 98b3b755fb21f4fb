//! The home file: floors, areas and entities, in Home Assistant's fixture vocabulary.
//! It fills the `{name}`, `{area}` and `{floor}` lists. Schema: `docs/home-file.md`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::normalize::normalize_phrase;
use crate::{Error, Result};

/// A home. Unknown keys are ignored so HA fixture files load as they are.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Home {
    /// The area the satellite (microphone) is in: "turn on the lights" means here.
    #[serde(default)]
    pub satellite_area: Option<String>,
    /// Floors.
    #[serde(default)]
    pub floors: Vec<Floor>,
    /// Areas (rooms).
    #[serde(default)]
    pub areas: Vec<Area>,
    /// Entities (devices).
    #[serde(default)]
    pub entities: Vec<Entity>,
}

/// A floor.
#[derive(Debug, Clone, Deserialize)]
pub struct Floor {
    /// Name as written (slot values use it).
    pub name: String,
    /// Other names.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// An area.
#[derive(Debug, Clone, Deserialize)]
pub struct Area {
    /// Name as written.
    pub name: String,
    /// The floor's name, if any.
    #[serde(default)]
    pub floor: Option<String>,
    /// Other names.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// An entity.
#[derive(Debug, Clone, Deserialize)]
pub struct Entity {
    /// Name as written.
    pub name: String,
    /// HA domain: `light`, `switch`, `cover`, `climate`…
    pub domain: String,
    /// HA device class (`garage`, `temperature`…).
    #[serde(default)]
    pub device_class: Option<String>,
    /// The area's name, if any.
    #[serde(default)]
    pub area: Option<String>,
    /// Other names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Whether voice can address it (default true).
    #[serde(default = "yes")]
    pub exposed: bool,
}

fn yes() -> bool {
    true
}

impl Home {
    /// Parses and validates YAML. Returns the home and its warnings.
    pub fn from_yaml(text: &str, origin: &str) -> Result<(Home, Vec<String>)> {
        let home: Home =
            serde_norway::from_str(text).map_err(|e| Error::Format(format!("{origin}: {e}")))?;
        let warnings = home
            .validate()
            .map_err(|e| Error::Invalid(format!("{origin}: {e}")))?;
        Ok((home, warnings))
    }

    /// Reads and validates a home file.
    pub fn load(path: &Path) -> Result<(Home, Vec<String>)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Checks references and names. Errors: an empty home, blank names, a duplicate
    /// floor or area name (the `{area}` slot could not say which), unknown floor/area
    /// references. Warnings: duplicate entity names (kept: HA allows "Lamp" in two
    /// rooms; the first entity's domain/device class is used for context checks).
    pub fn validate(&self) -> std::result::Result<Vec<String>, String> {
        if self.entities.is_empty() && self.areas.is_empty() {
            return Err("the home is empty (no areas and no entities)".into());
        }
        let mut warnings = Vec::new();
        let floors = unique_names("floor", self.floors.iter().map(|f| (&f.name, &f.aliases)))?;
        let areas = unique_names("area", self.areas.iter().map(|a| (&a.name, &a.aliases)))?;
        for a in &self.areas {
            if let Some(f) = &a.floor {
                if !floors.contains_key(&normalize_phrase(f)) {
                    return Err(format!("area '{}' is on unknown floor '{f}'", a.name));
                }
            }
        }
        if let Some(s) = &self.satellite_area {
            if !areas.contains_key(&normalize_phrase(s)) {
                return Err(format!("satellite_area '{s}' is not one of the areas"));
            }
        }
        let mut seen: HashMap<String, &str> = HashMap::new();
        for e in &self.entities {
            if normalize_phrase(&e.name).is_empty() || e.domain.trim().is_empty() {
                return Err(format!("entity '{}' needs a name and a domain", e.name));
            }
            if let Some(a) = &e.area {
                if !areas.contains_key(&normalize_phrase(a)) {
                    return Err(format!("entity '{}' is in unknown area '{a}'", e.name));
                }
            }
            for n in e.names() {
                let key = normalize_phrase(n);
                if let Some(prev) = seen.insert(key, &e.name) {
                    warnings.push(format!(
                        "entity name '{n}' is used by both '{prev}' and '{}'",
                        e.name
                    ));
                }
            }
        }
        Ok(warnings)
    }

    /// The area the satellite is in, with its canonical name.
    pub fn satellite_area_name(&self) -> Option<&str> {
        let s = normalize_phrase(self.satellite_area.as_deref()?);
        self.areas
            .iter()
            .find(|a| {
                normalize_phrase(&a.name) == s || a.aliases.iter().any(|x| normalize_phrase(x) == s)
            })
            .map(|a| a.name.as_str())
    }
}

/// A name followed by its aliases: every way a floor, area or entity can be said.
fn with_aliases<'a>(name: &'a String, aliases: &'a [String]) -> impl Iterator<Item = &'a String> {
    std::iter::once(name).chain(aliases)
}

impl Floor {
    /// Its name, then its aliases.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        with_aliases(&self.name, &self.aliases)
    }
}

impl Area {
    /// Its name, then its aliases.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        with_aliases(&self.name, &self.aliases)
    }
}

impl Entity {
    /// Its name, then its aliases.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        with_aliases(&self.name, &self.aliases)
    }
}

fn unique_names<'a>(
    kind: &str,
    items: impl Iterator<Item = (&'a String, &'a Vec<String>)>,
) -> std::result::Result<HashMap<String, &'a str>, String> {
    let mut map = HashMap::new();
    for (name, aliases) in items {
        for n in with_aliases(name, aliases) {
            let key = normalize_phrase(n);
            if key.is_empty() {
                return Err(format!("{kind} with a blank name or alias ('{name}')"));
            }
            if let Some(prev) = map.insert(key, name.as_str()) {
                return Err(format!(
                    "duplicate {kind} name '{n}' ('{prev}' and '{name}')"
                ));
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_validates() {
        let (home, warnings) = Home::from_yaml(
            "satellite_area: kitchen\nfloors: [{name: Ground Floor, aliases: [downstairs]}]\nareas:\n  - {name: Kitchen, floor: Ground Floor}\nentities:\n  - {name: Overhead Light, domain: light, area: Kitchen, aliases: [ceiling light]}\n  - {name: Fan, domain: fan, exposed: false}\nunknown_key: 1\n",
            "home.yaml",
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(home.satellite_area_name(), Some("Kitchen"));
        assert!(!home.entities[1].exposed);
        assert!(home.entities[0].exposed);
    }

    fn bad(yaml: &str) -> String {
        Home::from_yaml(yaml, "h.yaml").unwrap_err().to_string()
    }

    #[test]
    fn rejects_bad_homes() {
        assert!(bad("{}").contains("empty"));
        assert!(bad("areas: [{name: A}, {name: a}]").contains("duplicate area name"));
        assert!(bad("areas: [{name: A, floor: Nope}]").contains("unknown floor"));
        assert!(bad("areas: [{name: A}]\nsatellite_area: B").contains("satellite_area"));
        assert!(bad("entities: [{name: L, domain: light, area: X}]").contains("unknown area"));
        assert!(bad("entities: [{name: L}]").contains("domain"));
    }

    #[test]
    fn duplicate_entity_names_warn() {
        let (_, w) = Home::from_yaml(
            "areas: [{name: A}, {name: B}]\nentities: [{name: Lamp, domain: light, area: A}, {name: lamp, domain: light, area: B}]",
            "h.yaml",
        )
        .unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("'lamp' is used by both"));
    }
}
