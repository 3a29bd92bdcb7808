//! Printing results: a human table or text, or the API's JSON with `--json`.

use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn show<T: Serialize>(self, value: &T, text: impl FnOnce(&T)) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).expect("API values serialise"));
        } else {
            text(value);
        }
    }
}

/// Left-aligned columns sized to their widest cell, without borders.
pub fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    print!("{}", render_table(headers, rows));
}

fn render_table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.lines().map(|line| format!("{}\n", line.trim_end())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_characters() {
        let text = render_table(
            &["ID", "NAME"],
            [vec!["7".to_owned(), "Café de la Gare".to_owned()], vec!["1234".to_owned(), "Bar".to_owned()]]
                .into_iter(),
        );
        assert_eq!(text, "ID    NAME\n7     Café de la Gare\n1234  Bar\n");
    }
}
