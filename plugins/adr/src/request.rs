//! The inputs of the two tasks, as they arrive (serde) and once checked.
//!
//! Serde checks the shape and names the path of a field that does not fit; [`GenerateInput::validate`]
//! and [`AnalyzeInput::validate`] then check the values, field by field, before any work, and
//! return [`TaskError::InvalidInput`] naming the field as serde would (`personas[1].favours: …`).
//! An option and a decision driver may be given as a bare string (its name) or as an object.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use taskhost_sdk::TaskError;

use crate::naming;

/// Largest number of options, drivers or personas in one request.
pub const MAX_ITEMS: usize = 50;
/// Largest number of records in one analysis.
pub const MAX_RECORDS: usize = 10_000;
/// Longest title, name or list item, in characters.
pub const MAX_LINE_CHARS: usize = 500;
/// Longest free text (context, details, a record's content), in bytes.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

/// What markdownlint's MD026 (no trailing punctuation in headings) refuses at a heading's end by
/// default: `.,;:!` and their full-width forms.
const MD026_PUNCTUATION: &[char] = &['.', ',', ';', ':', '!', '。', '，', '；', '：', '！'];

/// Record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Michael Nygard's format, as adr-tools writes it (the default, as in adr-tools).
    #[default]
    Nygard,
    /// MADR 4.0.0, with YAML front matter.
    Madr,
}

/// Status of a new record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not agreed yet.
    Proposed,
    /// Agreed.
    Accepted,
    /// Considered and turned down (MADR).
    Rejected,
    /// No longer in force, with nothing in its place.
    Deprecated,
}

impl Status {
    /// Lower case, as MADR's front matter writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
            Status::Deprecated => "deprecated",
        }
    }

    /// Capitalised, as adr-tools writes it in the Status section (`Accepted`).
    pub fn capitalised(self) -> &'static str {
        match self {
            Status::Proposed => "Proposed",
            Status::Accepted => "Accepted",
            Status::Rejected => "Rejected",
            Status::Deprecated => "Deprecated",
        }
    }
}

/// `generate_adr` input, as submitted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateInput {
    /// The decision's title: `Use PostgreSQL for persistence`.
    pub title: String,
    /// The issue motivating the decision: free Markdown text.
    pub context: String,
    /// The options considered (at least one).
    pub options: Vec<OptionListItem>,
    /// Forces and concerns the decision answers to.
    #[serde(default)]
    pub decision_drivers: Vec<DriverListItem>,
    /// People whose viewpoints the record folds in.
    #[serde(default)]
    pub personas: Vec<PersonaInput>,
    /// `proposed`, `accepted` (default, as `adr new` writes), `rejected` or `deprecated`.
    #[serde(default)]
    pub status: Option<String>,
    /// `YYYY-MM-DD`: required, so that the record depends on nothing but its input.
    pub date: String,
    /// The record this one supersedes.
    #[serde(default)]
    pub supersedes: Option<SupersedesInput>,
    /// `nygard` (default) or `madr`.
    #[serde(default)]
    pub format: Format,
    /// The chosen option's name; chosen from the evidence when absent.
    #[serde(default)]
    pub decision: Option<String>,
    /// Why the option was chosen; derived from the evidence when absent.
    #[serde(default)]
    pub decision_rationale: Option<String>,
    /// More about the change, after the decision sentence.
    #[serde(default)]
    pub decision_details: Option<String>,
    /// How compliance will be confirmed (MADR's Confirmation; a paragraph in Nygard's Decision).
    #[serde(default)]
    pub confirmation: Option<String>,
    /// Anything else: links, agreements, when to revisit.
    #[serde(default)]
    pub more_information: Option<String>,
    /// Who decides (MADR `decision-makers`).
    #[serde(default)]
    pub decision_makers: Vec<String>,
    /// Who is kept informed (MADR `informed`).
    #[serde(default)]
    pub informed: Vec<String>,
    /// The record's number; by default the next one after `existing_files` and `supersedes`.
    #[serde(default)]
    pub number: Option<u32>,
    /// Names in the ADR folder, to number the new record as `adr new` would.
    #[serde(default)]
    pub existing_files: Vec<String>,
}

/// An option: `"PostgreSQL"` or `{"name": "PostgreSQL", "pros": [...], ...}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionInput {
    /// Its name, repeated wherever the option is mentioned (MADR ADR-0006).
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: Option<String>,
    /// Arguments for it.
    #[serde(default)]
    pub pros: Vec<String>,
    /// Arguments against it.
    #[serde(default)]
    pub cons: Vec<String>,
    /// Arguments that weigh neither way (MADR ADR-0014).
    #[serde(default)]
    pub neutral: Vec<String>,
    /// Score per decision driver, 0 to 10, for the weighted decision matrix.
    #[serde(default)]
    pub scores: Option<BTreeMap<String, f64>>,
}

/// A decision driver: `"Data integrity"` or `{"name": "Data integrity", "weight": 3}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverInput {
    /// The force or concern.
    pub name: String,
    /// Relative weight in the decision matrix (default 1).
    #[serde(default)]
    pub weight: Option<f64>,
}

/// A persona: someone whose viewpoint the record weighs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaInput {
    /// `Ada Lovelace`.
    pub name: String,
    /// `Database administrator`.
    pub role: String,
    /// Their viewpoint, in their words.
    pub stance: String,
    /// The option they argue for.
    #[serde(default)]
    pub favours: Option<String>,
    /// Options they argue against.
    #[serde(default)]
    pub opposes: Vec<String>,
    /// Concerns they raise: matched to the decision drivers by name, added as drivers otherwise.
    #[serde(default)]
    pub concerns: Vec<String>,
}

/// The record a new one supersedes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupersedesInput {
    /// Its file name: `0002-use-mysql.md`.
    pub file_name: String,
    /// Its text, to be amended with the reverse link and status.
    #[serde(default)]
    pub content: Option<String>,
    /// Its title, when `content` is not given.
    #[serde(default)]
    pub title: Option<String>,
}

/// An element of `options`: a name or an [`OptionInput`] object.
#[derive(Debug)]
pub struct OptionListItem(pub OptionInput);

/// An element of `decision_drivers`: a name or a [`DriverInput`] object.
#[derive(Debug)]
pub struct DriverListItem(pub DriverInput);

/// Deserialises a list item from a string (its name) or from an object, keeping serde's path to
/// the field at fault inside the object.
macro_rules! name_or_object {
    ($item:ident, $inner:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $item {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ItemVisitor;
                impl<'de> Visitor<'de> for ItemVisitor {
                    type Value = $item;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, name: &str) -> Result<$item, E> {
                        Ok($item(<$inner>::named(name)))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$item, A::Error> {
                        <$inner>::deserialize(de::value::MapAccessDeserializer::new(map)).map($item)
                    }
                }
                deserializer.deserialize_any(ItemVisitor)
            }
        }
    };
}

name_or_object!(
    OptionListItem,
    OptionInput,
    "a name or an option object {name, description, pros, cons, neutral, scores}"
);
name_or_object!(DriverListItem, DriverInput, "a name or a driver object {name, weight}");

impl OptionInput {
    fn named(name: &str) -> Self {
        OptionInput { name: name.to_owned(), ..OptionInput::default() }
    }
}

impl DriverInput {
    fn named(name: &str) -> Self {
        DriverInput { name: name.to_owned(), weight: None }
    }
}

// ---------------------------------------------------------------------------------------------
// Checked requests.

/// A checked option.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionOption {
    /// Its name, on one line.
    pub name: String,
    /// Its description, as a paragraph block (may be empty).
    pub description: String,
    /// Arguments for, against, and neither, each on one line.
    pub pros: Vec<String>,
    /// Arguments against.
    pub cons: Vec<String>,
    /// Arguments that weigh neither way.
    pub neutral: Vec<String>,
    /// Scores aligned with [`GenerateRequest::drivers`], when the matrix is used.
    pub scores: Option<Vec<f64>>,
}

/// A checked decision driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    /// The force or concern, on one line.
    pub name: String,
    /// Its weight (1 unless given).
    pub weight: f64,
    /// True when the request gave a weight.
    pub weighted: bool,
}

/// A checked persona.
#[derive(Debug, Clone, PartialEq)]
pub struct Persona {
    /// Name, on one line.
    pub name: String,
    /// Role, on one line.
    pub role: String,
    /// Viewpoint, on one line.
    pub stance: String,
    /// Index of the option they argue for.
    pub favours: Option<usize>,
    /// Indexes of the options they argue against.
    pub opposes: Vec<usize>,
    /// Concerns, each on one line.
    pub concerns: Vec<String>,
}

impl Persona {
    /// `Ada Lovelace (Database administrator)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.role)
    }
}

/// The superseded record, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Superseded {
    /// Its file name.
    pub file_name: String,
    /// Its number (from the file name).
    pub number: u32,
    /// Its text, when given.
    pub content: Option<String>,
    /// Its title as a link text shows it (adr-tools: the first line less `# `).
    pub link_title: String,
}

/// A checked `generate_adr` request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Title, on one line.
    pub title: String,
    /// Record number.
    pub number: u32,
    /// File name: `0003-use-postgresql.md`.
    pub file_name: String,
    /// Context, as a paragraph block.
    pub context: String,
    /// Options.
    pub options: Vec<DecisionOption>,
    /// Drivers.
    pub drivers: Vec<Driver>,
    /// Personas.
    pub personas: Vec<Persona>,
    /// Status.
    pub status: Status,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Format.
    pub format: Format,
    /// The stated choice, if any.
    pub decision: Option<usize>,
    /// The stated rationale, on one line (without a final full stop).
    pub decision_rationale: Option<String>,
    /// Paragraphs after the decision sentence.
    pub decision_details: String,
    /// Confirmation paragraphs.
    pub confirmation: String,
    /// More information paragraphs.
    pub more_information: String,
    /// Decision makers.
    pub decision_makers: Vec<String>,
    /// Informed.
    pub informed: Vec<String>,
    /// The superseded record.
    pub supersedes: Option<Superseded>,
}

fn invalid(field: &str, reason: impl fmt::Display) -> TaskError {
    TaskError::invalid_input(field, reason)
}

/// A one-line text field: required, at most [`MAX_LINE_CHARS`], no control characters.
fn line(field: &str, value: &str) -> Result<String, TaskError> {
    let value = crate::text::inline(value);
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_LINE_CHARS {
        return Err(invalid(field, format!("must be at most {MAX_LINE_CHARS} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value)
}

/// A free-text field: at most [`MAX_TEXT_BYTES`], normalised to a paragraph block.
fn paragraphs(field: &str, value: &str) -> Result<String, TaskError> {
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid(field, format!("must be at most {MAX_TEXT_BYTES} bytes")));
    }
    if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid(field, "must not contain control characters other than tabs and line breaks"));
    }
    Ok(crate::text::block(value))
}

fn lines(field: &str, values: &[String]) -> Result<Vec<String>, TaskError> {
    if values.len() > MAX_ITEMS {
        return Err(invalid(field, format!("at most {MAX_ITEMS} items")));
    }
    values.iter().enumerate().map(|(i, v)| line(&format!("{field}[{i}]"), v)).collect()
}

/// A heading text that markdownlint's MD026 accepts.
fn heading_safe(field: &str, value: &str) -> Result<(), TaskError> {
    match value.chars().last() {
        Some(c) if MD026_PUNCTUATION.contains(&c) => Err(invalid(
            field,
            format!("ends in {c:?}, which a MADR heading may not (markdownlint MD026); drop it"),
        )),
        _ => Ok(()),
    }
}

/// `YYYY-MM-DD`, a real calendar date.
pub fn valid_date(date: &str) -> bool {
    let bytes = date.as_bytes();
    let shape = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes.iter().enumerate().all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) =
        (date[..4].parse::<u32>(), date[5..7].parse::<u32>(), date[8..].parse::<u32>())
    else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// A file name in an ADR folder: a plain name, no path.
pub fn plain_file_name(field: &str, name: &str) -> Result<(), TaskError> {
    if name.is_empty() || name.len() > 255 {
        return Err(invalid(field, "must be 1 to 255 bytes"));
    }
    if name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err(invalid(field, "must be a plain file name, without a folder"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn find_option(options: &[DecisionOption], name: &str) -> Option<usize> {
    let wanted = crate::text::inline(name).to_lowercase();
    options.iter().position(|o| o.name.to_lowercase() == wanted)
}

fn option_names(options: &[DecisionOption]) -> String {
    options.iter().map(|o| format!("{:?}", o.name)).collect::<Vec<_>>().join(", ")
}

impl GenerateInput {
    /// Checks every field and resolves names to indexes.
    pub fn validate(self) -> Result<GenerateRequest, TaskError> {
        let format = self.format;
        let title = line("title", &self.title)?;
        if naming::slug(&title).is_empty() {
            return Err(invalid("title", "needs at least one ASCII letter or digit for the file name"));
        }
        if format == Format::Madr {
            heading_safe("title", &title)?;
        }
        let context = paragraphs("context", &self.context)?;
        if context.is_empty() {
            return Err(invalid("context", "must not be empty: say what motivates the decision"));
        }

        let drivers = self.validate_drivers()?;
        let options = validate_options(self.options, &drivers, format)?;
        let personas = validate_personas(self.personas, &options)?;

        let status = match self.status.as_deref().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("accepted") => Status::Accepted,
            Some("proposed") => Status::Proposed,
            Some("rejected") => Status::Rejected,
            Some("deprecated") => Status::Deprecated,
            Some("superseded") => {
                return Err(invalid(
                    "status",
                    "a new record is not superseded; generate the record that supersedes it, with `supersedes`",
                ));
            }
            Some(other) => {
                return Err(invalid(
                    "status",
                    format!("{other:?} is not one of proposed, accepted, rejected, deprecated"),
                ));
            }
        };
        if !valid_date(&self.date) {
            return Err(invalid("date", format!("{:?} is not a date as YYYY-MM-DD", self.date)));
        }

        let decision = match &self.decision {
            None => None,
            Some(name) => Some(find_option(&options, name).ok_or_else(|| {
                invalid(
                    "decision",
                    format!("{name:?} is not one of the options ({})", option_names(&options)),
                )
            })?),
        };
        let decision_rationale = match &self.decision_rationale {
            None => None,
            Some(text) => Some(line("decision_rationale", text)?.trim_end_matches('.').to_owned()),
        };

        if self.existing_files.len() > MAX_RECORDS {
            return Err(invalid("existing_files", format!("at most {MAX_RECORDS} names")));
        }
        for (i, name) in self.existing_files.iter().enumerate() {
            plain_file_name(&format!("existing_files[{i}]"), name)?;
        }
        let supersedes = match self.supersedes {
            None => None,
            Some(s) => Some(validate_superseded(s)?),
        };
        if supersedes.is_some() && matches!(status, Status::Rejected | Status::Deprecated) {
            return Err(invalid(
                "supersedes",
                format!("a {} record cannot supersede another; use proposed or accepted", status.as_str()),
            ));
        }
        let number = match self.number {
            Some(number) => {
                if number > 999_999 {
                    return Err(invalid("number", "must be at most 999999"));
                }
                if let Some(taken) =
                    self.existing_files.iter().find(|f| naming::leading_number(f) == Some(number))
                {
                    return Err(invalid("number", format!("{number} is taken by {taken:?}")));
                }
                number
            }
            None => naming::next_number(
                self.existing_files
                    .iter()
                    .map(String::as_str)
                    .chain(supersedes.as_ref().map(|s| s.file_name.as_str())),
            ),
        };
        if let Some(s) = &supersedes
            && s.number == number
        {
            return Err(invalid("number", format!("{number} is the number of the superseded record")));
        }
        let file_name = naming::file_name(number, &title);

        Ok(GenerateRequest {
            title,
            number,
            file_name,
            context,
            options,
            drivers,
            personas,
            status,
            date: self.date,
            format,
            decision,
            decision_rationale,
            decision_details: paragraphs("decision_details", self.decision_details.as_deref().unwrap_or(""))?,
            confirmation: paragraphs("confirmation", self.confirmation.as_deref().unwrap_or(""))?,
            more_information: paragraphs("more_information", self.more_information.as_deref().unwrap_or(""))?,
            decision_makers: lines("decision_makers", &self.decision_makers)?,
            informed: lines("informed", &self.informed)?,
            supersedes,
        })
    }

    fn validate_drivers(&self) -> Result<Vec<Driver>, TaskError> {
        if self.decision_drivers.len() > MAX_ITEMS {
            return Err(invalid("decision_drivers", format!("at most {MAX_ITEMS} drivers")));
        }
        let mut drivers: Vec<Driver> = Vec::new();
        for (i, d) in self.decision_drivers.iter().enumerate() {
            let name = line(&format!("decision_drivers[{i}].name"), &d.0.name)?;
            if drivers.iter().any(|other| other.name.eq_ignore_ascii_case(&name)) {
                return Err(invalid(
                    &format!("decision_drivers[{i}].name"),
                    format!("{name:?} is listed twice"),
                ));
            }
            let weight = d.0.weight.unwrap_or(1.0);
            if !(weight.is_finite() && weight > 0.0 && weight <= 1000.0) {
                return Err(invalid(
                    &format!("decision_drivers[{i}].weight"),
                    "must be above 0 and at most 1000",
                ));
            }
            drivers.push(Driver { name, weight, weighted: d.0.weight.is_some() });
        }
        Ok(drivers)
    }
}

fn validate_options(
    items: Vec<OptionListItem>,
    drivers: &[Driver],
    format: Format,
) -> Result<Vec<DecisionOption>, TaskError> {
    if items.is_empty() {
        return Err(invalid("options", "list at least one option considered"));
    }
    if items.len() > MAX_ITEMS {
        return Err(invalid("options", format!("at most {MAX_ITEMS} options")));
    }
    let scored = items.iter().filter(|o| o.0.scores.is_some()).count();
    if scored != 0 && scored != items.len() {
        let unscored = items.iter().position(|o| o.0.scores.is_none()).unwrap_or(0);
        return Err(invalid(&format!("options[{unscored}].scores"), "score every option, or none"));
    }
    if scored != 0 && drivers.is_empty() {
        return Err(invalid("options[0].scores", "scores need decision_drivers to score against"));
    }
    let mut options: Vec<DecisionOption> = Vec::new();
    for (i, OptionListItem(o)) in items.into_iter().enumerate() {
        let field = |f: &str| format!("options[{i}].{f}");
        let name = line(&field("name"), &o.name)?;
        if format == Format::Madr {
            heading_safe(&field("name"), &name)?;
        }
        if options.iter().any(|other| other.name.to_lowercase() == name.to_lowercase()) {
            return Err(invalid(&field("name"), format!("{name:?} is listed twice")));
        }
        let scores = match o.scores {
            None => None,
            Some(scores) => {
                for (driver, score) in &scores {
                    if !drivers.iter().any(|d| d.name.eq_ignore_ascii_case(driver.trim())) {
                        return Err(invalid(
                            &format!("options[{i}].scores.{driver}"),
                            "is not one of the decision_drivers",
                        ));
                    }
                    if !(score.is_finite() && (0.0..=10.0).contains(score)) {
                        return Err(invalid(
                            &format!("options[{i}].scores.{driver}"),
                            "must be from 0 to 10",
                        ));
                    }
                }
                let mut aligned = Vec::with_capacity(drivers.len());
                for d in drivers {
                    let score = scores.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(&d.name));
                    match score {
                        Some((_, score)) => aligned.push(*score),
                        None => {
                            return Err(invalid(
                                &field("scores"),
                                format!("no score for driver {:?}", d.name),
                            ));
                        }
                    }
                }
                Some(aligned)
            }
        };
        options.push(DecisionOption {
            name,
            description: paragraphs(&field("description"), o.description.as_deref().unwrap_or(""))?,
            pros: lines(&field("pros"), &o.pros)?,
            cons: lines(&field("cons"), &o.cons)?,
            neutral: lines(&field("neutral"), &o.neutral)?,
            scores,
        });
    }
    Ok(options)
}

fn validate_personas(
    items: Vec<PersonaInput>,
    options: &[DecisionOption],
) -> Result<Vec<Persona>, TaskError> {
    if items.len() > MAX_ITEMS {
        return Err(invalid("personas", format!("at most {MAX_ITEMS} personas")));
    }
    let mut personas: Vec<Persona> = Vec::new();
    for (i, p) in items.into_iter().enumerate() {
        let field = |f: &str| format!("personas[{i}].{f}");
        let name = line(&field("name"), &p.name)?;
        if personas.iter().any(|other| other.name == name) {
            return Err(invalid(&field("name"), format!("{name:?} is listed twice")));
        }
        let role = line(&field("role"), &p.role)?;
        let stance = line(&field("stance"), &p.stance)?;
        let favours = match &p.favours {
            None => None,
            Some(option) => Some(find_option(options, option).ok_or_else(|| {
                invalid(
                    &field("favours"),
                    format!("{option:?} is not one of the options ({})", option_names(options)),
                )
            })?),
        };
        if p.opposes.len() > MAX_ITEMS {
            return Err(invalid(&field("opposes"), format!("at most {MAX_ITEMS} options")));
        }
        let mut opposes = Vec::new();
        for (j, option) in p.opposes.iter().enumerate() {
            let index = find_option(options, option).ok_or_else(|| {
                invalid(
                    &format!("personas[{i}].opposes[{j}]"),
                    format!("{option:?} is not one of the options ({})", option_names(options)),
                )
            })?;
            if favours == Some(index) {
                return Err(invalid(
                    &format!("personas[{i}].opposes[{j}]"),
                    "is the option this persona favours",
                ));
            }
            if !opposes.contains(&index) {
                opposes.push(index);
            }
        }
        let concerns = lines(&field("concerns"), &p.concerns)?;
        personas.push(Persona { name, role, stance, favours, opposes, concerns });
    }
    Ok(personas)
}

fn validate_superseded(s: SupersedesInput) -> Result<Superseded, TaskError> {
    plain_file_name("supersedes.file_name", &s.file_name)?;
    let number = match naming::leading_number(&s.file_name) {
        Some(number) if naming::listed_by_adr_tools(&s.file_name) => number,
        _ => {
            return Err(invalid(
                "supersedes.file_name",
                format!("{:?} is not a decision record's name (NNNN-title.md)", s.file_name),
            ));
        }
    };
    let link_title = match (&s.content, &s.title) {
        (Some(content), _) => {
            if content.len() > MAX_TEXT_BYTES {
                return Err(invalid("supersedes.content", format!("must be at most {MAX_TEXT_BYTES} bytes")));
            }
            let parsed = crate::parse::parse_record(&s.file_name, content);
            if parsed.format == crate::parse::RecordFormat::Unknown {
                return Err(invalid(
                    "supersedes.content",
                    "is neither a Nygard record (# N. Title, ## Status) nor a MADR one",
                ));
            }
            if parsed.format == crate::parse::RecordFormat::Nygard && !parsed.has_heading(2, "Status") {
                return Err(invalid(
                    "supersedes.content",
                    "has no `## Status` section to record the supersede link in",
                ));
            }
            match parsed.link_title() {
                Some(title) => title,
                None => return Err(invalid("supersedes.content", "has no title heading")),
            }
        }
        (None, Some(title)) => line("supersedes.title", title)?,
        (None, None) => {
            return Err(invalid(
                "supersedes",
                "give the superseded record's content (to amend it) or at least its title",
            ));
        }
    };
    Ok(Superseded { file_name: s.file_name, number, content: s.content, link_title })
}

/// One record handed to the analysis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    /// Its file name in the ADR folder.
    pub file_name: String,
    /// Its text.
    pub content: String,
}

/// `analyze_adrs` input, as submitted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeInput {
    /// The folder's files.
    pub records: Vec<RecordInput>,
    /// The folder, as `.adr-dir` names it, for the `adr list` lines (default `doc/adr`).
    #[serde(default)]
    pub adr_dir: Option<String>,
    /// Text before the table of contents (`adr generate toc -i`).
    #[serde(default)]
    pub toc_intro: Option<String>,
    /// Text after it (`-o`).
    #[serde(default)]
    pub toc_outro: Option<String>,
    /// Prefix of each link (`-p`).
    #[serde(default)]
    pub toc_link_prefix: Option<String>,
}

/// A checked `analyze_adrs` request.
#[derive(Debug)]
pub struct AnalyzeRequest {
    /// The files, in the order given.
    pub records: Vec<RecordInput>,
    /// The ADR folder.
    pub adr_dir: String,
    /// `-i` text.
    pub toc_intro: String,
    /// `-o` text.
    pub toc_outro: String,
    /// `-p` prefix.
    pub toc_link_prefix: String,
}

impl AnalyzeInput {
    /// Checks the file names (plain, unique) and sizes.
    pub fn validate(self) -> Result<AnalyzeRequest, TaskError> {
        if self.records.len() > MAX_RECORDS {
            return Err(invalid("records", format!("at most {MAX_RECORDS} records")));
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, record) in self.records.iter().enumerate() {
            plain_file_name(&format!("records[{i}].file_name"), &record.file_name)?;
            if let Some(first) = seen.insert(&record.file_name, i) {
                return Err(invalid(&format!("records[{i}].file_name"), format!("repeats records[{first}]")));
            }
            if record.content.len() > MAX_TEXT_BYTES {
                return Err(invalid(
                    &format!("records[{i}].content"),
                    format!("must be at most {MAX_TEXT_BYTES} bytes"),
                ));
            }
        }
        let adr_dir = self.adr_dir.unwrap_or_else(|| "doc/adr".to_owned());
        if adr_dir.is_empty()
            || adr_dir.starts_with('/')
            || adr_dir.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(invalid("adr_dir", "must be a relative folder path without spaces"));
        }
        let prefix = self.toc_link_prefix.unwrap_or_default();
        if prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid("toc_link_prefix", "must not contain whitespace"));
        }
        Ok(AnalyzeRequest {
            records: self.records,
            adr_dir: adr_dir.trim_end_matches('/').to_owned(),
            toc_intro: self.toc_intro.unwrap_or_default(),
            toc_outro: self.toc_outro.unwrap_or_default(),
            toc_link_prefix: prefix,
        })
    }
}
