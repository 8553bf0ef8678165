#!/usr/bin/env nextflow
/*
 * scprospatial: infer and impute single-cell spatial proteomics from scRNA-seq.
 *
 * Entry workflow: validates the parameters against nextflow_schema.json and the samplesheet against
 * assets/schema_input.json (nf-schema plugin), then runs workflows/scprospatial.nf. Each process runs one
 * `bin/` entry script of the installed package; `scprospatial run` runs the same steps on one machine.
 */
include { validateParameters; paramsSummaryLog; samplesheetToList } from 'plugin/nf-schema'
include { SCPROSPATIAL     } from './workflows/scprospatial'
include { samplesheetItems } from './subworkflows/local/utils_scprospatial'


workflow {
    validateParameters()
    log.info(paramsSummaryLog(workflow))

    def sheet = file(params.input, checkIfExists: true)
    def rows = samplesheetToList(sheet, "${projectDir}/assets/schema_input.json")
    ch_samplesheet = channel.fromList(samplesheetItems(rows, sheet, params.model))

    SCPROSPATIAL(ch_samplesheet, params.model, params.evaluate)

    SCPROSPATIAL.out.versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}
