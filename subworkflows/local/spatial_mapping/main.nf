// SPATIAL_GRAPH on every imaged sample -> MAP each sample x each RNA-only cohort -> SPATIAL_STATS on each
// mapped sample (on the measured markers of each graph when there is no RNA-only cohort).
include { SPATIAL_GRAPH } from '../../../modules/local/spatial_graph'
include { MAP           } from '../../../modules/local/map'
include { SPATIAL_STATS } from '../../../modules/local/spatial_stats'

workflow SPATIAL_MAPPING {
    take:
    ch_spatial    // [ meta, h5ad ] prepared spatial rows
    ch_rna        // [ meta, h5ad ] prepared rna rows
    ch_model      // value channel: model.pt

    main:
    SPATIAL_GRAPH(ch_spatial)

    // one meta per pair: id <spatial>__<rna> (the output names), and both rows' ids
    ch_pairs = SPATIAL_GRAPH.out.h5ad
        .combine(ch_rna)
        .map { sp_meta, graph, rna_meta, rna ->
            [[id: "${sp_meta.id}__${rna_meta.id}", spatial_id: sp_meta.id, rna_id: rna_meta.id], graph, rna]
        }
    MAP(ch_pairs, ch_model)

    ch_has_rna = ch_rna.count().map { n -> n > 0 }
    ch_measured_only = SPATIAL_GRAPH.out.h5ad
        .combine(ch_has_rna)
        .filter { _meta, _h5ad, has_rna -> !has_rna }
        .map { meta, h5ad, _has_rna -> [meta, h5ad] }
    SPATIAL_STATS(MAP.out.h5ad.mix(ch_measured_only))

    emit:
    graphs   = SPATIAL_GRAPH.out.h5ad    // [ meta, <id>.graph.h5ad ]
    mapped   = MAP.out.h5ad              // [ meta, <sp>__<rna>.mapped.h5ad ]
    stats    = SPATIAL_STATS.out.dir     // [ meta, <name>/ ]
    versions = SPATIAL_GRAPH.out.versions.mix(MAP.out.versions, SPATIAL_STATS.out.versions)
}
