// One training stage (pretrain, align or translate) of the model; the workflow includes it three times
// (PRETRAIN, ALIGN, TRANSLATE), each stage starting from the previous stage's model.pt.
process TRAIN {
    tag "${meta.id}:${stage}"
    label 'process_gpu'

    conda "${moduleDir}/../../../containers/environment.yml"
    // tasks given a GPU (profile gpu) run the CUDA image, built from the same install; others the CPU image
    container "${task.accelerator ? 'ghcr.io/scprospatial/scprospatial:0.1.0-cuda' : 'ghcr.io/scprospatial/scprospatial:0.1.0'}"

    input:
    tuple val(meta), path(cohorts, stageAs: 'cohorts/*')
    val stage
    path previous    // model.pt of the previous stage; [] for pretrain

    output:
    tuple val(meta), path("${stage}/model.pt")           , emit: model
    tuple val(meta), path("${stage}/metrics.json")       , emit: metrics
    tuple val(meta), path("${stage}/training_curves.csv"), emit: curves
    path "versions.yml"                                  , emit: versions

    script:
    def args = task.ext.args ?: ''
    def init = previous ? "--init-from ${previous}" : ''
    """
    scprospatial_train.py ${cohorts} --outdir ${stage} --stages ${stage} ${init} --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    scprospatial versions --process "${task.process}" > versions.yml
    """

    stub:
    """
    mkdir -p ${stage} && touch ${stage}/model.pt ${stage}/metrics.json ${stage}/training_curves.csv
    scprospatial versions --process "${task.process}" > versions.yml
    """
}
