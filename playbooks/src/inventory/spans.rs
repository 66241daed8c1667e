//! Key positions in a TOML text: for each dotted key path, the byte offset where it is
//! defined (a `[table]` header or a `key =` line).

pub struct Document {
    offsets: Vec<(Vec<String>, usize)>,
}

impl Document {
    pub fn parse(text: &str) -> Option<Document> {
        let mut offsets = Vec::new();
        let mut table: Vec<String> = Vec::new();
        let mut pos = 0;
        for line in text.split_inclusive('\n') {
            let t = line.trim();
            if let Some(h) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                let h = h.trim_start_matches('[');
                table = split_key(h);
                offsets.push((table.clone(), pos));
            } else if let Some((k, _)) = t.split_once('=')
                && !t.starts_with('#')
            {
                let mut full = table.clone();
                full.extend(split_key(k));
                offsets.push((full, pos));
            }
            pos += line.len();
        }
        Some(Document { offsets })
    }

    /// The offset of the deepest defined prefix of `keys`.
    pub fn span(&self, keys: &[&str]) -> Option<usize> {
        for n in (1..=keys.len()).rev() {
            let want: Vec<String> = keys[..n].iter().map(|s| s.to_string()).collect();
            if let Some((_, off)) = self.offsets.iter().find(|(k, _)| *k == want) {
                return Some(*off);
            }
        }
        None
    }
}

fn split_key(k: &str) -> Vec<String> {
    k.split('.')
        .map(|p| p.trim().trim_matches('"').trim_matches('\'').to_string())
        .collect()
}
