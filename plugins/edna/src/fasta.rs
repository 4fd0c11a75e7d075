//! FASTA reading and dereplication.
//!
//! A record is a header line starting with `>` and the sequence lines after it. The label is
//! the header up to its first white space, as vsearch reads it; an abundance annotation
//! `;size=N` in the label (the usearch/vsearch convention for dereplicated amplicons) gives
//! the number of reads the record stands for, 1 without one. Sequences are IUPAC nucleotide
//! codes in either case; `U` is read as `T`, so RNA works too. Gaps (`-`, `.`) are refused: an
//! aligned FASTA is not a set of reads.
//!
//! Dereplication merges identical sequences, summing their abundances, and sorts the uniques
//! as `vsearch --cluster_size` sorts its input: by decreasing abundance, then by label (byte
//! order), then by first appearance.

use std::collections::HashMap;
use std::fmt;

/// One FASTA record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The header up to its first white space, annotations included (`read7;size=12`).
    pub label: String,
    /// The label without its `;size=N` annotation.
    pub id: String,
    /// Upper case IUPAC codes, `U` read as `T`.
    pub sequence: Vec<u8>,
    /// Reads this record stands for: its `;size=N`, or 1.
    pub abundance: u64,
}

/// Why a FASTA text was refused: the line, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastaError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for FastaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

const NUCLEOTIDE_CODES: &[u8] = b"ACGTURYSWKMBDHVN";

/// Reads FASTA text. Refuses text before the first header, empty labels and sequences,
/// characters that are not IUPAC nucleotide codes, malformed `;size=` annotations, sequences
/// longer than `max_length`, and labels used twice.
pub fn parse(text: &str, max_length: usize) -> Result<Vec<Record>, FastaError> {
    Ok(parse_with_headers(text, max_length)?.into_iter().map(|(record, _)| record).collect())
}

/// [`parse`], keeping each record's whole header line (without `>`) beside it.
pub fn parse_with_headers(text: &str, max_length: usize) -> Result<Vec<(Record, String)>, FastaError> {
    let mut records: Vec<Record> = Vec::new();
    let mut headers: Vec<String> = Vec::new();
    let mut header_line = 0;
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim_end_matches('\r');
        if let Some(header) = line.strip_prefix('>') {
            if let Some(last) = records.last() {
                check_not_empty(last, header_line)?;
            }
            let label = header.split_whitespace().next().unwrap_or("").to_owned();
            if label.is_empty() {
                return Err(FastaError { line: line_number, reason: "header without a label".into() });
            }
            let (id, abundance) =
                split_abundance(&label).map_err(|reason| FastaError { line: line_number, reason })?;
            if let Some(first) = seen_ids.insert(id.clone(), line_number) {
                return Err(FastaError {
                    line: line_number,
                    reason: format!("label `{id}` is used twice (first on line {first})"),
                });
            }
            records.push(Record { label, id, sequence: Vec::new(), abundance });
            headers.push(header.trim().to_owned());
            header_line = line_number;
            continue;
        }
        let Some(record) = records.last_mut() else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(FastaError { line: line_number, reason: "text before the first `>` header".into() });
        };
        for (column, byte) in line.bytes().enumerate() {
            if byte.is_ascii_whitespace() {
                continue;
            }
            let base = byte.to_ascii_uppercase();
            if !NUCLEOTIDE_CODES.contains(&base) {
                let shown = line[column..].chars().next().unwrap_or('?');
                let hint = if matches!(byte, b'-' | b'.') { " (gaps: give unaligned sequences)" } else { "" };
                return Err(FastaError {
                    line: line_number,
                    reason: format!(
                        "`{shown}` in `{}` at column {} is not an IUPAC nucleotide code{hint}",
                        record.id,
                        column + 1
                    ),
                });
            }
            record.sequence.push(if base == b'U' { b'T' } else { base });
        }
        if record.sequence.len() > max_length {
            return Err(FastaError {
                line: line_number,
                reason: format!("`{}` is longer than {max_length} bases", record.id),
            });
        }
    }
    if let Some(last) = records.last() {
        check_not_empty(last, header_line)?;
    }
    Ok(records.into_iter().zip(headers).collect())
}

fn check_not_empty(record: &Record, header_line: usize) -> Result<(), FastaError> {
    if record.sequence.is_empty() {
        return Err(FastaError { line: header_line, reason: format!("`{}` has no sequence", record.id) });
    }
    Ok(())
}

/// Splits `read7;size=12;` into (`read7`, 12). Other `;key=value` annotations stay in the id.
fn split_abundance(label: &str) -> Result<(String, u64), String> {
    let mut id_parts = Vec::new();
    let mut abundance = None;
    for (index, part) in label.split(';').enumerate() {
        match part.strip_prefix("size=") {
            Some(value) if index > 0 => {
                let size: u64 = value
                    .parse()
                    .map_err(|_| format!("`;size={value}` in `{label}` is not a whole number"))?;
                if size == 0 {
                    return Err(format!("`;size=0` in `{label}`: an abundance is at least 1"));
                }
                abundance = Some(size);
            }
            _ if !part.is_empty() || index == 0 => id_parts.push(part),
            _ => {}
        }
    }
    Ok((id_parts.join(";"), abundance.unwrap_or(1)))
}

/// A distinct sequence and the reads that carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    /// Label and id of its first record.
    pub label: String,
    pub id: String,
    pub sequence: Vec<u8>,
    /// Sum of the abundances of its records.
    pub abundance: u64,
    /// How many records carried it.
    pub records: usize,
}

/// Merges identical sequences (as `vsearch --derep_fulllength --sizein` does) and sorts the
/// result by decreasing abundance, then label, then first appearance.
pub fn dereplicate(records: &[Record]) -> Vec<Unique> {
    let mut index_of: HashMap<&[u8], usize> = HashMap::new();
    let mut uniques: Vec<Unique> = Vec::new();
    for record in records {
        match index_of.get(record.sequence.as_slice()) {
            Some(&i) => {
                uniques[i].abundance += record.abundance;
                uniques[i].records += 1;
            }
            None => {
                index_of.insert(&record.sequence, uniques.len());
                uniques.push(Unique {
                    label: record.label.clone(),
                    id: record.id.clone(),
                    sequence: record.sequence.clone(),
                    abundance: record.abundance,
                    records: 1,
                });
            }
        }
    }
    // A stable sort keeps first appearance as the last tie-breaker.
    uniques.sort_by(|a, b| {
        b.abundance.cmp(&a.abundance).then_with(|| a.label.as_bytes().cmp(b.label.as_bytes()))
    });
    uniques
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_with_their_abundance_and_normalised() {
        let text = ">r1;size=12;sample=A some description\nacgu\nNN\n>r2\nACGT\n";
        let records = parse(text, 100).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].label, "r1;size=12;sample=A");
        assert_eq!(records[0].id, "r1;sample=A");
        assert_eq!(records[0].abundance, 12);
        assert_eq!(records[0].sequence, b"ACGTNN");
        assert_eq!(records[1].abundance, 1);
    }

    #[test]
    fn bad_fasta_is_refused_with_the_line() {
        let cases = [
            ("ACGT\n>r\nACGT", 1, "before the first"),
            (">r\nAC-GT", 2, "gaps"),
            (">r\nACXT", 2, "`X` in `r` at column 3"),
            (">r\n>s\nACGT", 1, "`r` has no sequence"),
            (">r;size=0\nACGT", 1, "at least 1"),
            (">r;size=many\nACGT", 1, "not a whole number"),
            (">r\nACGT\n>r\nACGT", 3, "used twice"),
            ("> \nACGT", 1, "without a label"),
            (">r\nACGTACGT", 2, "longer than 4"),
        ];
        for (text, line, needle) in cases {
            let max_length = if needle.contains("longer") { 4 } else { 100 };
            let error = parse(text, max_length).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.to_string().contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn dereplication_sums_abundances_and_sorts_like_vsearch() {
        let text = ">b\nAAAA\n>a\nCCCC\n>c;size=2\nAAAA\n>d\nGGGG\n>e\nCCCC\n>f;size=3\nTTTT\n";
        let uniques = dereplicate(&parse(text, 100).unwrap());
        let order: Vec<(&str, u64, usize)> =
            uniques.iter().map(|u| (u.id.as_str(), u.abundance, u.records)).collect();
        // AAAA: 1 + 2 = 3 (label b), TTTT: 3 (label f;size=3), CCCC: 2 (a), GGGG: 1 (d).
        assert_eq!(order, vec![("b", 3, 2), ("f", 3, 1), ("a", 2, 2), ("d", 1, 1)]);
    }
}
