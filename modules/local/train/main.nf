// One training stage (pretrain, align or translate) of the model; the workflow includes it three times
// (PRETRAIN, ALIGN, TRANSLATE), each stage starting from the previous stage's model.pt.
process TRAIN {
    tag "${stage}"
    label 'process_gpu'

    input:
    path cohorts, stageAs: 'cohorts/*'
    val stage
    path previous    // model.pt of the previous stage; [] for pretrain

    output:
    path "${stage}/model.pt"            , emit: model
    path "${stage}/metrics.json"        , emit: metrics
    path "${stage}/training_curves.csv" , emit: curves
    path "versions.yml"                 , emit: versions

    script:
    def args = task.ext.args ?: ''
    def init = previous ? "--init-from ${previous}" : ''
    """
    scprospatial_train.py ${cohorts} --outdir ${stage} --stages ${stage} ${init} --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    echo "\\"${task.process}\\": {scprospatial: \$(scprospatial --version | cut -d' ' -f2)}" > versions.yml
    """

    stub:
    """
    mkdir -p ${stage} && touch ${stage}/model.pt ${stage}/metrics.json ${stage}/training_curves.csv
    echo "\\"${task.process}\\": {scprospatial: stub}" > versions.yml
    """
}
