{{/* Names, labels and shared pieces of the mmrecipe chart. */}}

{{- define "mmrecipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mmrecipe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "mmrecipe.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mmrecipe.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mmrecipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mmrecipe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mmrecipe.labels" -}}
{{ include "mmrecipe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mmrecipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mmrecipe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name the existing ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mmrecipe.image" -}}
{{- $repo := required "image.repository: set the registry path of the image built from the repository's Dockerfile" .Values.image.repository -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mmrecipe.envConfigMap" -}}{{ include "mmrecipe.fullname" . }}-env{{- end -}}
{{- define "mmrecipe.instanceConfigMap" -}}{{ include "mmrecipe.fullname" . }}-instance{{- end -}}

{{- define "mmrecipe.s3uri" -}}
{{- $value := index . 0 -}}{{- $key := index . 1 -}}
{{- $uri := required (printf "%s: set the s3://bucket/prefix URI (MMRECIPE_%s)" $key (upper $key)) $value -}}
{{- if not (hasPrefix "s3://" $uri) -}}
{{- fail (printf "%s=%q: in the cluster it must be an s3://bucket/prefix URI, not a local path" $key $uri) -}}
{{- end -}}
{{- $uri -}}
{{- end -}}

{{/* Environment every mmrecipe container gets besides the env ConfigMap: the Postgres password. */}}
{{- define "mmrecipe.secretEnv" -}}
- name: DAGSTER_PG_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.secretName }}
      key: postgresql-password
{{- end -}}

{{- define "mmrecipe.envFrom" -}}
- configMapRef:
    name: {{ include "mmrecipe.envConfigMap" . }}
{{- if and .Values.ray.enabled (not .rayPod) }}
- configMapRef:
    name: {{ include "mmrecipe.rayClientConfigMap" . }}
{{- end }}
{{- if .Values.aws.credentialsSecret }}
- secretRef:
    name: {{ .Values.aws.credentialsSecret }}
{{- end }}
{{- end -}}

{{/* The ConfigMaps run and step pods take their env from: the env, and where the Ray cluster is (if enabled). */}}
{{- define "mmrecipe.envConfigMaps" -}}
{{- $maps := list (include "mmrecipe.envConfigMap" .) -}}
{{- if .Values.ray.enabled -}}{{- $maps = append $maps (include "mmrecipe.rayClientConfigMap" .) -}}{{- end -}}
{{- toJson $maps -}}
{{- end -}}

{{- define "mmrecipe.volumes" -}}
- name: dagster-instance
  configMap:
    name: {{ include "mmrecipe.instanceConfigMap" . }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .sizeLimit | default "1Gi" }}
{{- end -}}

{{- define "mmrecipe.volumeMounts" -}}
- name: dagster-instance
  mountPath: /opt/dagster/dagster_home
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/*
The container context the code server hands to Dagster (DAGSTER_CONTAINER_CONTEXT): every run pod
launched by the K8sRunLauncher, and every step pod launched by the k8s_job_executor, gets this
ServiceAccount, env, /tmp volume, security contexts and run-worker resources. Step resources come
from each asset's dagster-k8s/config op tags and override the run-worker ones.
*/}}
{{- define "mmrecipe.containerContext" -}}
{{- $tmp := dict "name" "tmp" "emptyDir" (dict "sizeLimit" .Values.runWorker.scratchSizeLimit) -}}
{{- $k8s := dict
  "service_account_name" (include "mmrecipe.serviceAccountName" .)
  "env_config_maps" (include "mmrecipe.envConfigMaps" . | fromJsonArray)
  "volumes" (list $tmp)
  "volume_mounts" (list (dict "name" "tmp" "mountPath" "/tmp"))
  "security_context" .Values.securityContext
  "labels" (dict "app.kubernetes.io/part-of" (include "mmrecipe.name" .))
  "run_k8s_config" (dict
    "pod_spec_config" (dict "security_context" .Values.podSecurityContext)
    "container_config" (dict "resources" .Values.runWorker.resources))
-}}
{{- if .Values.aws.credentialsSecret -}}
{{- $_ := set $k8s "env_secrets" (list .Values.aws.credentialsSecret) -}}
{{- end -}}
{{- if .Values.imagePullSecrets -}}
{{- $_ := set $k8s "image_pull_secrets" .Values.imagePullSecrets -}}
{{- end -}}
{{- dict "k8s" $k8s | toJson -}}
{{- end -}}

{{/* The Ray side: the RayCluster's name, its head Service (KubeRay names it <cluster>-head-svc) and the address drivers use. */}}
{{- define "mmrecipe.rayCluster" -}}{{ include "mmrecipe.fullname" . }}-ray{{- end -}}
{{- define "mmrecipe.rayClientConfigMap" -}}{{ include "mmrecipe.fullname" . }}-ray-client{{- end -}}
{{- define "mmrecipe.rayAddress" -}}
{{- printf "ray://%s-head-svc.%s.svc:%v" (include "mmrecipe.rayCluster" .) .Release.Namespace .Values.ray.clientPort -}}
{{- end -}}

{{/*
One Ray pod's spec (head or worker group): the mmrecipe image, ServiceAccount, env and security
contexts; /tmp (Ray's session dir) and /dev/shm (its object store) as emptyDirs. Called with
(dict "root" $ "group" <values of the group> "container" <name> "gpus" <n> "ports" <bool>).
*/}}
{{- define "mmrecipe.rayPodSpec" -}}
{{- $ := .root -}}{{- $g := .group -}}
serviceAccountName: {{ include "mmrecipe.serviceAccountName" $ }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .container }}
    image: {{ include "mmrecipe.image" $ | quote }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    {{- if .ports }}
    ports:
      - {name: gcs-server, containerPort: 6379, protocol: TCP}
      - {name: dashboard, containerPort: 8265, protocol: TCP}
      - {name: client, containerPort: {{ $.Values.ray.clientPort }}, protocol: TCP}
    {{- end }}
    envFrom:  # the lake, S3 and region; not the Postgres password: Ray pods never touch the instance
      {{- include "mmrecipe.envFrom" (dict "Values" $.Values "Release" $.Release "Chart" $.Chart "rayPod" true) | nindent 6 }}
    resources:
      {{- $resources := deepCopy $g.resources }}
      {{- if .gpus }}
      {{- $_ := set $resources.limits "nvidia.com/gpu" (toString .gpus) }}
      {{- $_ := set $resources.requests "nvidia.com/gpu" (toString .gpus) }}
      {{- end }}
      {{- toYaml $resources | nindent 6 }}
    securityContext:
      {{- toYaml $.Values.securityContext | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: shm, mountPath: /dev/shm}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: {{ $g.scratchSizeLimit }}}
  - name: shm
    emptyDir: {medium: Memory, sizeLimit: {{ $g.shmSizeLimit }}}
{{- if .gpus }}
nodeSelector:
  {{- $selector := dict "mmrecipe.io/node-pool" "gpu" }}
  {{- with $.Values.gpuNodeSelector }}
  {{- $selector = dict }}
  {{- range (splitList "," .) }}
  {{- $kv := splitList "=" (trim .) }}
  {{- $_ := set $selector (trim (first $kv)) (trim (join "=" (rest $kv))) }}
  {{- end }}
  {{- end }}
  {{- toYaml $selector | nindent 2 }}
tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
{{- else }}
{{- with $g.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $g.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}
