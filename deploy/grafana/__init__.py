"""Grafana as code: boards, datasource and alert rules for opsmon, generated from typed Python.

    deploy.grafana.provision.render()         # {relative path: file text} of the provisioning tree
    deploy.grafana.provision.write(out_dir)   # what ``opsmon grafana provision`` does
    deploy.grafana.push.push(api, settings)   # what ``opsmon grafana push`` does

Every panel and rule queries InfluxDB in InfluxQL against the measurements of docs/data-model.md.
"""
