//! Personalisation with minijinja: `{{ first_name }}`, `{{ first_name | default("there") }}`.
//!
//! Undefined variables are errors (strict mode), so a lead missing a variable without a
//! default is skipped rather than mailed "Hi ,"; and any output still holding `{{` or
//! `{%` is refused, so an unrendered placeholder never reaches anyone.

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::lead::Lead;

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Checks a template compiles (at campaign creation).
pub fn check_syntax(source: &str) -> Result<(), String> {
    env().template_from_str(source).map(|_| ()).map_err(|e| e.to_string())
}

/// The variables a lead offers to templates.
pub fn lead_context(lead: &Lead) -> Value {
    let mut map: std::collections::BTreeMap<String, Value> =
        lead.variables.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    map.insert("email".into(), Value::from(lead.email.as_str()));
    for (k, v) in [("first_name", &lead.first_name), ("last_name", &lead.last_name), ("company", &lead.company)] {
        if let Some(v) = v {
            map.insert(k.into(), Value::from(v.as_str()));
        }
    }
    Value::from(map)
}

/// Renders one template for a lead.
pub fn render(source: &str, ctx: &Value) -> Result<String, String> {
    let env = env();
    let template = env.template_from_str(source).map_err(|e| e.to_string())?;
    let out = template.render(ctx.clone()).map_err(|e| match e.kind() {
        minijinja::ErrorKind::UndefinedError => {
            let mut missing: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| ctx.get_attr(v).map(|x| x.is_undefined()).unwrap_or(true))
                .collect();
            missing.sort();
            format!("missing variable with no default: {}", missing.join(", "))
        }
        _ => e.to_string(),
    })?;
    if out.contains("{{") || out.contains("{%") || out.contains("}}") {
        return Err("the rendered text still holds a placeholder".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::LeadInput;

    fn lead(first: Option<&str>) -> Lead {
        LeadInput {
            email: "ann@example.com".into(),
            first_name: first.map(str::to_owned),
            last_name: None,
            company: Some("Acme".into()),
            variables: [("city".to_owned(), "Riga".to_owned())].into(),
        }
        .into_lead()
        .expect("lead")
    }

    #[test]
    fn variables_defaults_and_missing() {
        let ann = lead_context(&lead(Some("Ann")));
        assert_eq!(
            render("Hi {{ first_name }} from {{ city }} at {{ company }}", &ann).as_deref(),
            Ok("Hi Ann from Riga at Acme")
        );
        let anon = lead_context(&lead(None));
        assert_eq!(render("Hi {{ first_name | default(\"there\") }}", &anon).as_deref(), Ok("Hi there"));
        assert_eq!(render("Hi {{ first_name }}", &anon).unwrap_err(), "missing variable with no default: first_name");
        assert!(render("Hi {{ '{{' }} x", &ann).is_err(), "literal placeholder output is refused");
    }
}
