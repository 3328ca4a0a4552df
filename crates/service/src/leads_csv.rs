//! Leads from a CSV file: a header row naming `email` and optionally `first_name`,
//! `last_name`, `company`; every other column becomes a template variable. Invalid rows
//! are reported by line number and skipped.

use std::collections::BTreeMap;

use coldsend_core::lead::{Lead, LeadInput};

use crate::campaigns::InvalidLead;

pub fn parse(bytes: &[u8]) -> Result<(Vec<Lead>, Vec<InvalidLead>), String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("cannot read the CSV header: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase().replace([' ', '-'], "_"))
        .collect();
    if !headers.iter().any(|h| h == "email") {
        return Err("the CSV header has no 'email' column".into());
    }
    let (mut leads, mut invalid) = (Vec::new(), Vec::new());
    for (i, record) in reader.records().enumerate() {
        let line = i + 2; // the header is line 1
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                invalid.push(InvalidLead { row: line, email: None, error: e.to_string() });
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        let mut input = LeadInput {
            email: String::new(),
            first_name: None,
            last_name: None,
            company: None,
            variables: BTreeMap::new(),
        };
        for (h, v) in headers.iter().zip(record.iter()) {
            let v = v.to_owned();
            match h.as_str() {
                "email" => input.email = v,
                "first_name" => input.first_name = Some(v),
                "last_name" => input.last_name = Some(v),
                "company" => input.company = Some(v),
                other if !v.is_empty() => {
                    input.variables.insert(other.to_owned(), v);
                }
                _ => {}
            }
        }
        let email = Some(input.email.clone()).filter(|e| !e.is_empty());
        match input.into_lead() {
            Ok(l) => leads.push(l),
            Err(error) => invalid.push(InvalidLead { row: line, email, error }),
        }
    }
    Ok((leads, invalid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_variables_and_errors() {
        let csv =
            "Email,First Name,company,city\nann@example.com,Ann,Acme,Riga\nnot-an-email,Bob,,\n\ncid@example.com,,,\n";
        let (leads, invalid) = parse(csv.as_bytes()).expect("parses");
        assert_eq!(leads.len(), 2);
        assert_eq!(leads[0].first_name.as_deref(), Some("Ann"));
        assert_eq!(leads[0].variables.get("city").map(String::as_str), Some("Riga"));
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].row, 3);
        assert!(parse(b"name\nx\n").is_err());
    }
}
