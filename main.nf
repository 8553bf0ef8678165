#!/usr/bin/env nextflow
/*
 * scprospatial: infer and impute single-cell spatial proteomics from scRNA-seq.
 *
 * Entry workflow: validates the parameters against nextflow_schema.json and the samplesheet against
 * assets/schema_input.json (nf-schema plugin), then runs workflows/scprospatial.nf. Each process runs one
 * `bin/` entry script of the installed package; `scprospatial run` runs the same steps on one machine.
 */
include { validateParameters; paramsSummaryLog; samplesheetToList } from 'plugin/nf-schema'
include { SCPROSPATIAL } from './workflows/scprospatial'

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

workflow {
    validateParameters()
    log.info(paramsSummaryLog(workflow))

    def sheet = file(params.input, checkIfExists: true)
    def rows = samplesheetToList(sheet, "${projectDir}/assets/schema_input.json")
    if (!params.model && !rows.any { row -> row[0].kind == 'citeseq' }) {
        error("${sheet}: no citeseq row to train on; add one or pass --model")
    }
    ch_samplesheet = channel.fromList(rows.withIndex().collect { row, i ->
        def (meta, paths) = row
        if (paths.tokenize(';').size() > 1 && meta.kind != 'citeseq') {
            error("${sheet}: row ${i + 2}: only a citeseq row may name two files (RNA;PROTEIN)")
        }
        [meta + [row: i], resolvePaths(paths, sheet, i + 2)]
    })

    SCPROSPATIAL(ch_samplesheet, params.model, params.evaluate)

    SCPROSPATIAL.out.versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}
