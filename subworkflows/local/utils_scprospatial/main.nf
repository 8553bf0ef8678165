/*
 * Samplesheet rows -> channel items, shared by main.nf (rows from nf-schema's samplesheetToList) and the
 * plugin-free entry tests/nextflow/main.nf (rows read with the same schema, assets/schema_input.json), so
 * both entries hand SCPROSPATIAL exactly the same items.
 */

// Samplesheet paths are absolute (or URLs) or relative to the samplesheet's folder, as in `scprospatial run`;
// a CITE-seq pair is written RNA;PROTEIN. Every file must exist.
def resolvePaths(String paths, sheet, int line) {
    paths.tokenize(';')*.trim().findAll { p -> p }.collect { p ->
        def f = p.startsWith('/') || p.contains('://') ? file(p) : sheet.parent.resolve(p)
        if (!f.exists()) {
            error("${sheet}: row ${line}: file not found: ${f}")
        }
        f
    }
}

// rows: [ [meta, paths], ... ] in samplesheet order -> [ [meta + row index, [files]], ... ], checked before any task
def samplesheetItems(rows, sheet, model) {
    if (!model && !rows.any { row -> row[0].kind == 'citeseq' }) {
        error("${sheet}: no citeseq row to train on; add one or pass --model")
    }
    rows.withIndex().collect { row, i ->
        def (meta, paths) = row
        if (paths.tokenize(';').size() > 1 && meta.kind != 'citeseq') {
            error("${sheet}: row ${i + 2}: only a citeseq row may name two files (RNA;PROTEIN)")
        }
        [meta + [row: i], resolvePaths(paths, sheet, i + 2)]
    }
}
