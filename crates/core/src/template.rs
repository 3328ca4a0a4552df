//! Personalisation with minijinja: `{{ first_name }}`, `{{ first_name | default("there") }}`.
//!
//! Undefined variables are errors (strict mode), so a lead missing a variable without a
//! default is skipped rather than mailed "Hi ,"; and any output still holding `{{` or
//! `{%` is refused, so an unrendered placeholder never reaches anyone.

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::lead::Lead;

/// Templates compiled once per distinct source (a campaign step's subject, text or HTML),
/// not once per send; named by their source. Started afresh past [`MAX_COMPILED`] so
/// edited campaigns cannot grow it without bound.
static COMPILED: std::sync::LazyLock<std::sync::RwLock<(Environment<'static>, usize)>> =
    std::sync::LazyLock::new(|| std::sync::RwLock::new((env(), 0)));
const MAX_COMPILED: usize = 10_000;

/// Runs `f` with `source` compiled (from the cache, or compiled now and kept).
fn compiled<R>(source: &str, f: impl FnOnce(&minijinja::Template<'_, '_>) -> R) -> Result<R, String> {
    {
        let cache = COMPILED.read().unwrap_or_else(|e| e.into_inner());
        if let Ok(t) = cache.0.get_template(source) {
            return Ok(f(&t));
        }
    }
    let mut cache = COMPILED.write().unwrap_or_else(|e| e.into_inner());
    if cache.0.get_template(source).is_err() {
        if cache.1 >= MAX_COMPILED {
            *cache = (env(), 0);
        }
        cache.0.add_template_owned(source.to_owned(), source.to_owned()).map_err(|e| e.to_string())?;
        cache.1 += 1;
    }
    let t = cache.0.get_template(source).map_err(|e| e.to_string())?;
    Ok(f(&t))
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// The fields every lead has (some may be empty for a given lead).
pub const LEAD_FIELDS: [&str; 4] = ["email", "first_name", "last_name", "company"];

/// Checks a template compiles (at campaign creation).
pub fn check_syntax(source: &str) -> Result<(), String> {
    env().template_from_str(source).map(|_| ()).map_err(|e| e.to_string())
}

/// Checks a template before any lead meets it: it compiles, every filter exists, and every
/// variable is a lead field, one of `lead_variables` (custom variables the campaign's leads
/// carry), or has a default. The error names the problem and where (line and column).
pub fn check(source: &str, lead_variables: &[String]) -> Result<(), String> {
    let env = env();
    let template = env.template_from_str(source).map_err(|e| e.to_string())?;
    // Render once with every variable a lead may provide: what is still undefined is not a
    // lead field and has no default; an unknown filter fails here too.
    let mut probe: std::collections::BTreeMap<String, Value> =
        LEAD_FIELDS.iter().map(|f| ((*f).to_owned(), Value::from("x"))).collect();
    for v in lead_variables {
        probe.insert(v.clone(), Value::from("x"));
    }
    match template.render(Value::from(probe.clone())) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == minijinja::ErrorKind::UndefinedError => {
            let mut unknown: Vec<String> =
                template.undeclared_variables(false).into_iter().filter(|v| !probe.contains_key(v)).collect();
            unknown.sort();
            let name = unknown.first().cloned().unwrap_or_default();
            Err(format!(
                "{}variable '{name}' is not a lead field ({}) nor in lead_variables, and has no default \
                 (write {{{{ {name} | default(\"…\") }}}} or add it to lead_variables)",
                position(source, &name),
                LEAD_FIELDS.join(", ")
            ))
        }
        Err(e) => Err(format!("{}{}", e.line().map(|l| format!("line {l}: ")).unwrap_or_default(), e)),
    }
}

/// "line L, column C: " of the first use of a variable, or nothing if not found.
fn position(source: &str, name: &str) -> String {
    let Some(offset) = source.match_indices(name).map(|(i, _)| i).find(|i| {
        let before = source[..*i].trim_end();
        before.ends_with("{{") || before.ends_with('(') || before.ends_with(',') || before.ends_with("if")
    }) else {
        return String::new();
    };
    let line = source[..offset].matches('\n').count() + 1;
    let column = offset - source[..offset].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("line {line}, column {column}: ")
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
    let out = compiled(source, |template| {
        template.render(ctx.clone()).map_err(|e| match e.kind() {
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
        })
    })??;
    if out.contains("{{") || out.contains("{%") || out.contains("}}") {
        return Err("the rendered text still holds a placeholder".into());
    }
    Ok(out)
}

#[cfg(test)]
mod render_tests {
    use super::{COMPILED, render};
    use minijinja::Value;

    #[test]
    fn a_source_is_compiled_once_and_renders_per_lead() {
        let source = "Hi {{ first_name }} (cache test 7f1c)";
        let ann = Value::from_iter([("first_name", "Ann")]);
        let bob = Value::from_iter([("first_name", "Bob")]);
        assert_eq!(render(source, &ann).as_deref(), Ok("Hi Ann (cache test 7f1c)"));
        assert!(COMPILED.read().is_ok_and(|c| c.0.get_template(source).is_ok()), "kept compiled");
        assert_eq!(render(source, &bob).as_deref(), Ok("Hi Bob (cache test 7f1c)"));
        let none = Value::from_iter([("last_name", "X")]);
        assert_eq!(render(source, &none), Err("missing variable with no default: first_name".into()));
        assert!(render("{{ broken", &ann).is_err(), "a syntax error is an error");
        assert!(COMPILED.read().is_ok_and(|c| c.0.get_template("{{ broken").is_err()), "and is not kept");
    }
}

#[cfg(test)]
mod check_tests {
    use super::check;

    #[test]
    fn typos_unknown_filters_and_undeclared_variables_are_caught_with_their_place() {
        let e = check("Hi {{ frist_name }}", &[]).unwrap_err();
        assert!(e.contains("'frist_name'") && e.contains("line 1, column 7"), "{e}");
        assert!(check("Hi {{ first_name }}", &[]).is_ok());
        assert!(check("Hi {{ nick | default('there') }}", &[]).is_ok());
        assert!(check("In {{ city }}", &["city".to_owned()]).is_ok());
        let e = check("Hi\n{{ first_name | shout }}", &[]).unwrap_err();
        assert!(e.contains("shout") && e.contains("line 2"), "{e}");
        assert!(check("{{ oops", &[]).is_err());
    }
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
