// PRETRAIN -> ALIGN -> TRANSLATE: the three training stages as three processes, each starting from the
// previous stage's checkpoint; the end result equals one `scprospatial train` call of all three stages.
include { TRAIN as PRETRAIN  } from '../../../modules/local/train'
include { TRAIN as ALIGN     } from '../../../modules/local/train'
include { TRAIN as TRANSLATE } from '../../../modules/local/train'

workflow TRAIN_MODEL {
    take:
    ch_cohorts    // value channel: [ meta (id: 'model'), [ h5ad, ... ] ] prepared citeseq rows, then rna rows

    main:
    PRETRAIN(ch_cohorts, 'pretrain', [])
    ALIGN(ch_cohorts, 'align', PRETRAIN.out.model.map { _meta, model -> model })
    TRANSLATE(ch_cohorts, 'translate', ALIGN.out.model.map { _meta, model -> model })

    emit:
    model    = TRANSLATE.out.model                                                 // [ meta, model.pt ]
    files    = TRANSLATE.out.model.mix(TRANSLATE.out.metrics, TRANSLATE.out.curves) // [ meta, file ]
    versions = PRETRAIN.out.versions.mix(ALIGN.out.versions, TRANSLATE.out.versions)
}
