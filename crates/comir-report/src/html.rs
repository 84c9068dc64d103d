//! A few HTML building blocks: escaping, tables, figures and the page frame. The page needs
//! nothing from the network (no scripts, no web fonts): it opens offline and archives as a
//! folder.

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A table with a header row; cells are escaped.
pub fn table<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for h in header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            out.push_str(&format!("<td>{}</td>", escape(c.as_ref())));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A picture with a caption; `src` is a file name relative to the page.
pub fn figure(src: &str, caption: &str) -> String {
    format!(
        "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
        escape(src),
        escape(caption),
        escape(caption)
    )
}

/// A definition list of `(what, value)` facts.
pub fn facts(items: &[(String, String)]) -> String {
    let mut out = String::from("<dl>\n");
    for (k, v) in items {
        out.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(k), escape(v)));
    }
    out.push_str("</dl>\n");
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;\
max-width:1200px;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:0.5em 0}th,td{border:1px solid #ccc;padding:0.25em 0.6em;\
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
figure{display:inline-block;margin:0.3em;vertical-align:top;text-align:center}\
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.85em;color:#555}\
.grid figure img{width:220px;image-rendering:auto}.plots figure img{width:560px}\
dl{display:grid;grid-template-columns:max-content auto;gap:0.2em 1em}dt{font-weight:600}dd{margin:0}\
.note{color:#555;font-size:0.9em}";

/// The whole page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n{body}\
         <p class=\"note\">Written by comir {v}.</p>\n</body>\n</html>\n",
        t = escape(title),
        v = env!("CARGO_PKG_VERSION"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        let t = table(&["x<y"], &[vec!["<script>"]]);
        assert!(t.contains("<th>x&lt;y</th>") && t.contains("<td>&lt;script&gt;</td>"));
        assert!(!t.contains("<script>"));
        let f = figure("a\".png", "c");
        assert!(f.contains("src=\"a&quot;.png\""));
    }
}
