//! kubectl's JSONPath templates (`-o jsonpath='{.items[*].name}{"\n"}'`) over a report's
//! JSON: literal text, `{EXPRESSION}`, `{"quoted text"}` and `{range EXPRESSION}...{end}`
//! (<https://kubernetes.io/docs/reference/kubectl/jsonpath/>). Each expression is kubectl's
//! dialect of JSONPath, handed to `jsonpath-rust` (the crate kube uses) as RFC 9535 after
//! kubectl's shorthand is translated: `.a` is `$.a`, `@` inside a range is the element.

use jsonpath_rust::JsonPath;
use serde_json::Value;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    /// An RFC 9535 query, relative to the current value (`$`).
    Query(String),
    Range(String, Vec<Node>),
}

/// A parsed template; parsing checks every expression, so a bad one is a usage error
/// before the command runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses kubectl's template syntax.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut stack: Vec<(String, Vec<Node>)> = Vec::new();
        let mut nodes = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                nodes.push(Node::Text(rest.to_string()));
                break;
            };
            if open > 0 {
                nodes.push(Node::Text(rest[..open].to_string()));
            }
            let close = closing_brace(&rest[open..])
                .ok_or_else(|| format!("unclosed '{{' in JSONPath template {text:?}"))?;
            let inner = rest[open + 1..open + close].trim();
            rest = &rest[open + close + 1..];
            if inner == "end" {
                let (query, outer) = stack
                    .pop()
                    .ok_or_else(|| format!("{{end}} without {{range}} in {text:?}"))?;
                let body = std::mem::replace(&mut nodes, outer);
                nodes.push(Node::Range(query, body));
            } else if let Some(expression) = inner.strip_prefix("range ") {
                let query = query_of(expression.trim())?;
                stack.push((query, std::mem::take(&mut nodes)));
            } else if let Some(quoted) = inner.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                nodes.push(Node::Text(unescape(quoted)));
            } else {
                nodes.push(Node::Query(query_of(inner)?));
            }
        }
        if !stack.is_empty() {
            return Err(format!("{{range}} without {{end}} in {text:?}"));
        }
        Ok(Template { nodes })
    }

    /// The template applied to `value`, as kubectl prints it: strings bare, other values
    /// as JSON, several results of one expression separated by spaces; a missing key
    /// prints nothing (kubectl's `--allow-missing-template-keys`).
    pub fn render(&self, value: &Value) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, value, &mut out);
        out
    }

    /// Every expression's results as one JSON array (`-o jsonpath-as-json`).
    pub fn results(&self, value: &Value) -> Vec<Value> {
        let mut found = Vec::new();
        collect(&self.nodes, value, &mut found);
        found
    }
}

fn render_nodes(nodes: &[Node], value: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Query(query) => {
                let texts: Vec<String> = query_values(value, query)
                    .into_iter()
                    .map(text_of)
                    .collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(query, body) => {
                for item in range_items(value, query) {
                    render_nodes(body, &item, out);
                }
            }
        }
    }
}

fn collect(nodes: &[Node], value: &Value, found: &mut Vec<Value>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Query(query) => found.extend(query_values(value, query)),
            Node::Range(query, body) => {
                for item in range_items(value, query) {
                    collect(body, &item, found);
                }
            }
        }
    }
}

/// The values a query selects; a query that fails at run time selects nothing.
fn query_values(value: &Value, query: &str) -> Vec<Value> {
    value
        .query(query)
        .map(|found| found.into_iter().cloned().collect())
        .unwrap_or_default()
}

/// What `{range}` iterates: the elements of the one array a query selects (kubectl's
/// `{range .items[*]}` and `{range .items}` alike), else each selected value.
fn range_items(value: &Value, query: &str) -> Vec<Value> {
    let found = query_values(value, query);
    match found.as_slice() {
        [Value::Array(items)] => items.clone(),
        _ => found,
    }
}

fn text_of(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// The index of the `}` that closes the `{` at the start of `text`, skipping quoted text.
fn closing_brace(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn unescape(text: &str) -> String {
    text.replace("\\n", "\n")
        .replace("\\t", "\t")
        .replace("\\r", "\r")
        .replace("\\\"", "\"")
        .replace("\\\\", "\\")
}

/// kubectl's expression as an RFC 9535 query: `.a.b` and `a.b` from the current value,
/// `@` is the current value, `$` stays; checked by parsing it.
fn query_of(expression: &str) -> Result<String, String> {
    let query = if expression.starts_with('$') {
        expression.to_string()
    } else if let Some(rest) = expression.strip_prefix('@') {
        format!("${rest}")
    } else if expression.starts_with('.') || expression.starts_with('[') {
        format!("${expression}")
    } else {
        format!("$.{expression}")
    };
    // kubectl's filters are written `[?(@.a==1)]`; RFC 9535 takes the parentheses too.
    jsonpath_rust::parser::parse_json_path(&query)
        .map_err(|e| format!("invalid JSONPath {expression:?}: {e}"))?;
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Value {
        json!({
            "apiVersion": "kubectl-db/v1",
            "kind": "DatabaseList",
            "items": [
                {"name": "orders", "engine": "postgresql", "ready": true, "port": 5432},
                {"name": "shop", "engine": "mysql", "ready": false, "port": 3306}
            ],
            "summary": {"fail": 1}
        })
    }

    fn render(template: &str) -> String {
        Template::parse(template).unwrap().render(&report())
    }

    #[test]
    fn kubectl_templates_print_as_kubectl_does() {
        assert_eq!(render("{.kind}"), "DatabaseList");
        assert_eq!(render("{.items[*].name}"), "orders shop");
        assert_eq!(render("{.items[0].port}"), "5432");
        assert_eq!(render("{.summary}"), r#"{"fail":1}"#);
        assert_eq!(render("fail={.summary.fail}{\"\\n\"}"), "fail=1\n");
        assert_eq!(
            render("{range .items[*]}{.name}{\"\\t\"}{.engine}{\"\\n\"}{end}"),
            "orders\tpostgresql\nshop\tmysql\n"
        );
        assert_eq!(render("{range .items}{@.name},{end}"), "orders,shop,");
        assert_eq!(render("{.items[?(@.ready==false)].name}"), "shop");
        assert_eq!(render("{$.kind}"), "DatabaseList");
        assert_eq!(render("{.missing}"), "");
        assert_eq!(render("plain"), "plain");
    }

    #[test]
    fn jsonpath_as_json_lists_the_results() {
        let template = Template::parse("{.items[*].port}").unwrap();
        assert_eq!(template.results(&report()), vec![json!(5432), json!(3306)]);
    }

    #[test]
    fn bad_templates_are_refused_before_the_command_runs() {
        assert!(Template::parse("{.items[").is_err());
        assert!(Template::parse("{.a").is_err());
        assert!(Template::parse("{range .items}{.name}").is_err());
        assert!(Template::parse("{end}").is_err());
    }
}
