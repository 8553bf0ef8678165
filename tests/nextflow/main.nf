#!/usr/bin/env nextflow
/*
 * Plugin-free entry to the scprospatial pipeline, for machines that cannot reach Nextflow's plugin registry
 * (the development machines and CI of this project). It runs the same SCPROSPATIAL workflow as main.nf with
 * the same configuration (conf/pipeline.config); what it does without the nf-schema plugin:
 *   - parameters are not validated against nextflow_schema.json (tests/test_schema_params.py checks that
 *     schema with a JSON Schema validator instead);
 *   - the samplesheet is read here, by readSamplesheet below, against the same assets/schema_input.json
 *     (required columns, no unknown column, each column's pattern / enum / minLength, unique ids), instead of
 *     nf-schema's samplesheetToList; rows then go through the same samplesheetItems as in main.nf.
 * Run (see the Makefile's nextflow-test target):
 *   nextflow run tests/nextflow/main.nf -C tests/nextflow/nextflow.config -profile test --input SHEET --outdir OUT
 */
include { SCPROSPATIAL     } from '../../workflows/scprospatial'
include { samplesheetItems } from '../../subworkflows/local/utils_scprospatial'

// One CSV line -> fields ("..." quoting with "" escapes, as spreadsheets write it)
def csvFields(String line) {
    line.split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/, -1).collect { f ->
        def v = f.trim()
        v.length() >= 2 && v.startsWith('"') && v.endsWith('"') ? v[1..-2].replace('""', '"').trim() : v
    }
}

// The samplesheet as [ [meta, path], ... ], checked against the samplesheet schema as nf-schema would check it
def readSamplesheet(sheet, schemaFile) {
    def schema = new groovy.json.JsonSlurper().parse(schemaFile.toFile())
    def props = schema.items.properties
    def lines = sheet.text.replaceFirst('^\uFEFF', '').readLines().findAll { line -> line.trim() }
    if (!lines) {
        error("${sheet}: the samplesheet is empty")
    }
    def header = csvFields(lines[0])
    def missing = schema.items.required.findAll { col -> !(col in header) }
    if (missing) {
        error("${sheet}: missing column(s) ${missing.join(', ')}")
    }
    def unknown = header.findAll { col -> !props.containsKey(col) }
    if (unknown) {
        error("${sheet}: unknown column(s) ${unknown.join(', ')}")
    }
    def seen = [:]
    lines.drop(1).withIndex().collect { line, i ->
        def values = csvFields(line)
        if (values.size() != header.size()) {
            error("${sheet}: row ${i + 2}: ${values.size()} fields, the header has ${header.size()}")
        }
        def row = [header, values].transpose().collectEntries { kv -> kv }
        props.each { name, spec ->
            def v = row[name]
            if (!v) {
                if (name in schema.items.required) {
                    error("${sheet}: row ${i + 2}: ${spec.errorMessage ?: "${name} is required"}")
                }
                return
            }
            if ((spec.pattern && !(v ==~ spec.pattern)) || (spec['enum'] && !(v in spec['enum']))) {
                error("${sheet}: row ${i + 2}: ${spec.errorMessage ?: "invalid ${name}"}: '${v}'")
            }
        }
        if (seen.containsKey(row.id)) {
            error("${sheet}: row ${i + 2}: id '${row.id}' repeats row ${seen[row.id]}")
        }
        seen[row.id] = i + 2
        def meta = props.findAll { _name, spec -> spec.meta }.collectEntries { name, _spec -> [name, row[name] ?: null] }
        [meta, row.path]
    }
}

workflow {
    if (!params.input) {
        error("--input: give the samplesheet CSV")
    }
    def sheet = file(params.input, checkIfExists: true)
    def rows = readSamplesheet(sheet, file("${projectDir}/../../assets/schema_input.json"))
    ch_samplesheet = channel.fromList(samplesheetItems(rows, sheet, params.model))

    SCPROSPATIAL(ch_samplesheet, params.model, params.evaluate)

    SCPROSPATIAL.out.versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}
