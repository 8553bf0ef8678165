#!/usr/bin/env nextflow
/*
 * scprospatial: infer and impute single-cell spatial proteomics from scRNA-seq.
 * Each process runs one `bin/` entry script of the installed package; `scprospatial run`
 * runs the same steps in the same order on one machine.
 */

include { PREPARE       } from './modules/local/prepare'
include { TRAIN         } from './modules/local/train'
include { IMPUTE        } from './modules/local/impute'
include { SPATIAL_GRAPH } from './modules/local/spatial_graph'
include { MAP           } from './modules/local/map'
include { SPATIAL_STATS } from './modules/local/spatial_stats'
include { REPORT        } from './modules/local/report'

def samplesheetRows(sheet) {
    def base = sheet.parent
    channel.fromPath(sheet, checkIfExists: true)
        .splitCsv(header: true, strip: true)
        .map { row ->
            if (!row.id || !row.kind || !row.path) {
                error "${sheet}: every row needs id, kind and path (got ${row})"
            }
            if (!(row.kind in ['citeseq', 'rna', 'spatial'])) {
                error "${sheet}: row ${row.id}: kind must be citeseq, rna or spatial"
            }
            def meta = [id: row.id, kind: row.kind, batch: row.batch ?: null]
            def files = row.path.tokenize(';').collect { p ->
                def f = p.startsWith('/') || p.contains('://') ? file(p) : base.resolve(p)
                file(f.toString(), checkIfExists: true)
            }
            [meta, files]
        }
}

workflow {
    if (!params.input) {
        error "--input SAMPLESHEET.csv is required (columns id,kind,path[,batch,...]; see assets/schema_input.json)"
    }
    ch_versions = channel.empty()

    PREPARE(samplesheetRows(file(params.input)))
    ch_versions = ch_versions.mix(PREPARE.out.versions)

    ch_prepared = PREPARE.out.h5ad.branch { meta, _h5ad ->
        citeseq: meta.kind == 'citeseq'
        rna: meta.kind == 'rna'
        spatial: meta.kind == 'spatial'
    }

    if (params.model) {
        ch_model = channel.value(file(params.model, checkIfExists: true))
    }
    else {
        TRAIN(ch_prepared.citeseq.mix(ch_prepared.rna).map { _meta, h5ad -> h5ad }.collect())
        ch_model = TRAIN.out.model
        ch_versions = ch_versions.mix(TRAIN.out.versions)
    }

    IMPUTE(ch_prepared.rna, ch_model)
    ch_versions = ch_versions.mix(IMPUTE.out.versions)

    SPATIAL_GRAPH(ch_prepared.spatial)
    ch_versions = ch_versions.mix(SPATIAL_GRAPH.out.versions)

    // every imaged sample receives the proteome of each RNA-only cohort
    MAP(SPATIAL_GRAPH.out.h5ad.combine(ch_prepared.rna), ch_model)
    ch_versions = ch_versions.mix(MAP.out.versions)

    // statistics on each mapped sample; without RNA-only cohorts, on the measured markers of each graph
    ch_has_rna = ch_prepared.rna.count().map { n -> n > 0 }
    ch_stats_in = MAP.out.h5ad
        .map { meta, h5ad -> [meta + [id: h5ad.name.replace('.mapped.h5ad', '')], h5ad] }
        .mix(SPATIAL_GRAPH.out.h5ad.combine(ch_has_rna).filter { _meta, _h5ad, has_rna -> !has_rna }.map { meta, h5ad, _has_rna -> [meta, h5ad] })
    SPATIAL_STATS(ch_stats_in)
    ch_versions = ch_versions.mix(SPATIAL_STATS.out.versions)

    ch_model_files = params.model ? ch_model : TRAIN.out.model.mix(TRAIN.out.metrics, TRAIN.out.curves)
    REPORT(
        PREPARE.out.h5ad.map { _meta, h5ad -> h5ad }.collect(),
        ch_model_files.collect(),
        IMPUTE.out.h5ad.map { _meta, h5ad -> h5ad }.collect().ifEmpty([]),
        SPATIAL_GRAPH.out.h5ad.map { _meta, h5ad -> h5ad }.collect().ifEmpty([]),
        MAP.out.h5ad.map { _meta, h5ad -> h5ad }.collect().ifEmpty([]),
        SPATIAL_STATS.out.dir.map { _meta, dir -> dir }.collect().ifEmpty([])
    )
    ch_versions = ch_versions.mix(REPORT.out.versions)

    ch_versions.unique().collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info")
}
