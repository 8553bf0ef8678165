process TRAIN {
    tag "${cohorts.size()} cohorts"
    label 'process_gpu'

    input:
    path cohorts

    output:
    path "model/model.pt"     , emit: model
    path "model/metrics.json" , emit: metrics
    path "model/*.csv"        , emit: curves, optional: true
    path "versions.yml"       , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    scprospatial_train.py ${cohorts} --outdir model --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    echo "\\"${task.process}\\": {scprospatial: \$(scprospatial --version | cut -d' ' -f2)}" > versions.yml
    """

    stub:
    """
    mkdir -p model && touch model/model.pt model/metrics.json
    echo "\\"${task.process}\\": {scprospatial: stub}" > versions.yml
    """
}
