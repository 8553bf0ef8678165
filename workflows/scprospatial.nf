/*
 * The scprospatial pipeline: prepare every samplesheet row, train the model in three stages (unless
 * --model is given), impute each RNA-only cohort, map it onto each imaged sample, spatial statistics,
 * optionally evaluate, and one HTML report. `scprospatial run` runs the same steps in the same order.
 */
include { PREPARE         } from '../modules/local/prepare'
include { IMPUTE          } from '../modules/local/impute'
include { EVALUATE        } from '../modules/local/evaluate'
include { REPORT          } from '../modules/local/report'
include { TRAIN_MODEL     } from '../subworkflows/local/train_model'
include { SPATIAL_MAPPING } from '../subworkflows/local/spatial_mapping'

// [ meta, file ] items -> one sorted list of files: citeseq rows before rna rows, each in samplesheet order
def filesInSheetOrder(ch) {
    ch.toSortedList { a, b -> (a[0].kind <=> b[0].kind) ?: (a[0].row <=> b[0].row) }
        .map { rows -> rows.collect { row -> row[1] } }
}

workflow SCPROSPATIAL {
    take:
    ch_samplesheet    // [ meta (id, kind, row, batch, format columns), [ file(s) ] ]
    model             // path of a trained model.pt, or null to train one
    evaluate          // true: also benchmark the model on the citeseq rows (EVALUATE)

    main:
    ch_versions = channel.empty()

    PREPARE(ch_samplesheet)
    ch_versions = ch_versions.mix(PREPARE.out.versions)
    ch_prepared = PREPARE.out.h5ad.branch { meta, _h5ad ->
        citeseq: meta.kind == 'citeseq'
        rna: meta.kind == 'rna'
        spatial: meta.kind == 'spatial'
    }

    if (model) {
        ch_model = channel.value(file(model, checkIfExists: true))
        ch_model_files = ch_model
    }
    else {
        TRAIN_MODEL(filesInSheetOrder(ch_prepared.citeseq.mix(ch_prepared.rna)).map { files -> [[id: 'model'], files] })
        ch_model = TRAIN_MODEL.out.model.map { _meta, model_pt -> model_pt }
        ch_model_files = TRAIN_MODEL.out.files.map { _meta, f -> f }
        ch_versions = ch_versions.mix(TRAIN_MODEL.out.versions)
    }

    IMPUTE(ch_prepared.rna, ch_model)
    ch_versions = ch_versions.mix(IMPUTE.out.versions)

    SPATIAL_MAPPING(ch_prepared.spatial, ch_prepared.rna, ch_model)
    ch_versions = ch_versions.mix(SPATIAL_MAPPING.out.versions)

    if (evaluate) {
        EVALUATE(filesInSheetOrder(ch_prepared.citeseq).map { files -> [[id: 'evaluate'], files] })
        ch_evaluation = EVALUATE.out.files.map { _meta, files -> files }
        ch_versions = ch_versions.mix(EVALUATE.out.versions)
    }
    else {
        ch_evaluation = channel.empty()
    }

    REPORT(
        PREPARE.out.h5ad.map { _meta, h5ad -> h5ad }.collect().map { files -> [[id: 'report'], files] },
        ch_model_files.collect(),
        IMPUTE.out.h5ad.map { _meta, h5ad -> h5ad }.collect().ifEmpty([]),
        SPATIAL_MAPPING.out.graphs.map { _meta, h5ad -> h5ad }.collect().ifEmpty([]),
        SPATIAL_MAPPING.out.mapped.map { _meta, h5ad -> h5ad }.collect().ifEmpty([]),
        SPATIAL_MAPPING.out.stats.map { _meta, dir -> dir }.collect().ifEmpty([]),
        ch_evaluation.collect().ifEmpty([])
    )
    ch_versions = ch_versions.mix(REPORT.out.versions)

    emit:
    report   = REPORT.out.html          // [ meta, report.html ]
    versions = ch_versions    // versions.yml of every task
}
