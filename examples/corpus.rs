fn main() {
    for dir in std::env::args().skip(1) {
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for p in paths {
            let bytes = std::fs::read(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let r = cafe_etl::check(&bytes, &name, &cafe_etl::Config::default());
            let lines = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            eprintln!(
                "{name} {} {} {}",
                r.format.as_str(),
                r.rows_read,
                r.rows_staged
            );
            if r.rows_rejected > 0
                || r.warnings > 0
                || r.refused
                || (r.rows_read + r.header_lines) as usize != lines
            {
                println!(
                    "{name}: {:?} read {} staged {} rej {} hdr {} lines {lines} issues {:?}",
                    r.format,
                    r.rows_read,
                    r.rows_staged,
                    r.rows_rejected,
                    r.header_lines,
                    r.issues
                        .iter()
                        .take(3)
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}
