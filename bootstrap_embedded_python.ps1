<#
.SYNOPSIS
    Prepare this folder (copied onto a USB stick) so the face finder runs from it on any
    64-bit Windows 10/11 PC: no Python, no internet and no admin rights needed there.

.DESCRIPTION
    Steps (each one says what it does; re-running repairs what is missing and redoes nothing
    that is already right):
      1. check the stick has room
      2. the official CPython embeddable zip (pinned version, sha256 checked) -> python-embed\
      3. enable site-packages in its ._pth file, so installed packages and facefinder import
      4. pip, from the pinned pip wheel (the embeddable Python has no pip; a wheel is a zip,
         and pip can run straight out of its own wheel, so no get-pip.py is needed)
      5. requirements.txt (+ the Visual C++ runtime DLLs onnxruntime needs) into python-embed\
         offline from wheels\ when that folder holds wheels, else from PyPI
      6. the models, downloaded and verified by finder.py --fetch-models
      7. finder.bat, the double-click launcher (paths relative to itself: drive letters may change)

    Run it on a PC with internet, from the stick's folder, in PowerShell 5.1 or later:
        powershell -ExecutionPolicy Bypass -File .\bootstrap_embedded_python.ps1
    Offline preparation: fill wheels\ first (python -m facefinder.wheels --platform win_amd64
    --python 3.12 --dest wheels\) and put python-3.12.10-embed-amd64.zip into wheels\ too.

.PARAMETER WithDlib
    Also install the optional dlib model (dlib-bin) and fetch its files.

.PARAMETER SkipModels
    Do not fetch the models (for testing the Python set-up alone).
#>
[CmdletBinding()]
param(
    [switch]$WithDlib,
    [switch]$SkipModels
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'   # PS 5.1's progress bar makes downloads ~10x slower

# ---- pinned inputs (change them together) ------------------------------------------------
$PythonVersion   = '3.12.10'
$PythonTag       = 'python312'   # name of the ._pth / .zip inside the embeddable package
$PythonZipName   = "python-$PythonVersion-embed-amd64.zip"
$PythonZipUrl    = "https://www.python.org/ftp/python/$PythonVersion/$PythonZipName"
$PythonZipSha256 = '4acbed6dd1c744b0376e3b1cf57ce906f9dc9e95e68824584c8099a63025a3c3'
$PipVersion      = '26.1.2'
$PipWheelName    = "pip-$PipVersion-py3-none-any.whl"
$PipWheelUrl     = "https://files.pythonhosted.org/packages/5d/95/6b5cb3461ea5673ba0995989746db58eb18b91b54dbf331e72f569540946/$PipWheelName"
$PipWheelSha256  = '382ff9f685ee3bc25864f820aa50505825f10f5458ffff07e30a6d96e5715cab'
$NeedFreeMB      = 1200   # Python + packages + models, with room for pip to unpack

# ---- where things go: everything relative to this script, i.e. on the stick ---------------
$Root      = $PSScriptRoot
$EmbedDir  = Join-Path $Root 'python-embed'
$Python    = Join-Path $EmbedDir 'python.exe'
$PthFile   = Join-Path $EmbedDir "$PythonTag._pth"
$Stamp     = Join-Path $EmbedDir '.stick-python'
$WheelsDir = Join-Path $Root 'wheels'
$TmpDir    = Join-Path $Root ("tmp\bootstrap-" + $PID)
$Launcher  = Join-Path $Root 'finder.bat'

function Write-Step([string]$Text) { Write-Host ''; Write-Host "==> $Text" -ForegroundColor Cyan }
function Write-Info([string]$Text) { Write-Host "    $Text" }
function Stop-Bootstrap([string]$Text) {
    Write-Host ''
    Write-Host "ERROR: $Text" -ForegroundColor Red
    Remove-Item -LiteralPath $TmpDir -Recurse -Force -ErrorAction SilentlyContinue
    exit 1
}

function Get-Sha256([string]$Path) {
    # Get-FileHash exists from PS 4; lower-case to compare with the pins
    return (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
}

function Test-Internet {
    try {
        $null = Invoke-WebRequest -Uri 'https://pypi.org/simple/pip/' -Method Head -UseBasicParsing -TimeoutSec 20
        return $true
    } catch {
        return $false
    }
}

function Get-PinnedFile([string]$Name, [string]$Url, [string]$Sha256, [string]$Dest) {
    # Use a verified copy from wheels\ when there is one, else download; always check the pin.
    if ((Test-Path -LiteralPath $Dest) -and ((Get-Sha256 $Dest) -eq $Sha256)) {
        Write-Info "$Name is already here and verified"
        return
    }
    $offline = Join-Path $WheelsDir $Name
    $part = "$Dest.part"
    if (Test-Path -LiteralPath $offline) {
        Write-Info "copying $Name from wheels\"
        Copy-Item -LiteralPath $offline -Destination $part -Force
    } else {
        if (-not (Test-Internet)) {
            Stop-Bootstrap ("No internet connection (pypi.org cannot be reached), and $Name is not in wheels\. " +
                "Connect to the internet and run this again, or copy $Name into $WheelsDir.")
        }
        Write-Info "downloading $Url"
        try {
            Invoke-WebRequest -Uri $Url -OutFile $part -UseBasicParsing
        } catch {
            Stop-Bootstrap "Download of $Name failed: $($_.Exception.Message). Is the internet reachable?"
        }
    }
    $actual = Get-Sha256 $part
    if ($actual -ne $Sha256) {
        Remove-Item -LiteralPath $part -Force
        Stop-Bootstrap "$Name has sha256 $actual but $Sha256 was expected; refusing to use it."
    }
    Move-Item -LiteralPath $part -Destination $Dest -Force
    Write-Info "$Name verified (sha256 $Sha256)"
}

function Invoke-Python([string]$What, [string[]]$Arguments) {
    # Native commands do not throw in PS 5.1: check the exit code ourselves.
    & $Python @Arguments
    if ($LASTEXITCODE -ne 0) { Stop-Bootstrap "$What failed (exit code $LASTEXITCODE); see the messages above." }
}

# PowerShell 5.1 still offers TLS 1.0 first; PyPI and python.org accept only TLS 1.2+.
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12

if (-not [Environment]::Is64BitOperatingSystem) {
    Stop-Bootstrap 'This stick needs 64-bit Windows (the models use onnxruntime, which has no 32-bit build here).'
}

# ------------------------------------------------------------------------------------------
Write-Step 'Step 1/7: checking the stick can be written and has room'
if ($Root.Length -gt 80) {
    Write-Info ("Warning: this folder's path is long ($($Root.Length) characters). Some packages hold deep " +
        'paths and Windows limits paths to 260 characters: a folder near the drive root (E:\facefinder) is safer.')
}
try {
    New-Item -ItemType Directory -Path $TmpDir -Force | Out-Null
} catch {
    Stop-Bootstrap "Cannot write to $Root (is the stick write-protected?)."
}
# pip unpacks into %TEMP%: keep that on the stick too, not in the PC's profile.
$env:TEMP = $TmpDir
$env:TMP = $TmpDir
$env:PIP_DISABLE_PIP_VERSION_CHECK = '1'
$env:PYTHONNOUSERSITE = '1'
$drive = New-Object System.IO.DriveInfo ([System.IO.Path]::GetPathRoot($Root))
$freeMB = [math]::Floor($drive.AvailableFreeSpace / (1024 * 1024))
Write-Info "free: $freeMB MB on $($drive.Name), needed at most: $NeedFreeMB MB"
if ($freeMB -lt $NeedFreeMB) {
    Stop-Bootstrap "Not enough space on the stick: $freeMB MB free, $NeedFreeMB MB needed. Free some space or use a bigger stick."
}

# ------------------------------------------------------------------------------------------
Write-Step "Step 2/7: Python $PythonVersion (official embeddable package) in python-embed\"
$want = "$PythonVersion $PythonZipSha256"
$have = ''
if (Test-Path -LiteralPath $Stamp) { $have = (Get-Content -LiteralPath $Stamp -Raw).Trim() }
if ((Test-Path -LiteralPath $Python) -and ($have -eq $want)) {
    Write-Info 'already installed'
} else {
    $zip = Join-Path $TmpDir $PythonZipName
    Get-PinnedFile $PythonZipName $PythonZipUrl $PythonZipSha256 $zip
    if (Test-Path -LiteralPath $EmbedDir) {
        Write-Info 'replacing an incomplete or different python-embed\'
        Remove-Item -LiteralPath $EmbedDir -Recurse -Force
    }
    Write-Info "unpacking into $EmbedDir"
    Expand-Archive -LiteralPath $zip -DestinationPath $EmbedDir -Force
    Set-Content -LiteralPath $Stamp -Value $want -Encoding ASCII
}

# ------------------------------------------------------------------------------------------
Write-Step "Step 3/7: enabling site-packages in $PythonTag._pth"
# The ._pth file replaces sys.path completely. Written whole every time (never appended to),
# so a re-run cannot duplicate lines. Paths are relative to python-embed\: '..' is the
# stick's root folder, where facefinder\ lives, whatever its drive letter is today.
$pth = @(
    "$PythonTag.zip",
    '.',
    'Lib\site-packages',
    '..',
    '',
    '# site: enables Lib\site-packages (written by bootstrap_embedded_python.ps1)',
    'import site'
)
Set-Content -LiteralPath $PthFile -Value $pth -Encoding ASCII
New-Item -ItemType Directory -Path (Join-Path $EmbedDir 'Lib\site-packages') -Force | Out-Null
Write-Info 'done'

# ------------------------------------------------------------------------------------------
Write-Step "Step 4/7: pip $PipVersion"
# (no stderr redirection: in PS 5.1 that turns Python's stderr into terminating errors)
& $Python -c "import sys, importlib.util as u; sys.exit(1 if u.find_spec('pip') is None else 0 if __import__('pip').__version__ == '$PipVersion' else 1)"
if ($LASTEXITCODE -eq 0) {
    Write-Info 'already installed'
} else {
    $pipWheel = Join-Path $TmpDir $PipWheelName
    Get-PinnedFile $PipWheelName $PipWheelUrl $PipWheelSha256 $pipWheel
    # A wheel is a zip on sys.path: pip runs from inside its own wheel and installs itself.
    Invoke-Python 'Installing pip' @("$pipWheel\pip", 'install', '--no-index', '--no-cache-dir',
        '--no-warn-script-location', $pipWheel)
}

# ------------------------------------------------------------------------------------------
Write-Step 'Step 5/7: installing the finder''s packages into python-embed\'
$pipArgs = @('-m', 'pip', 'install', '--no-cache-dir', '--no-warn-script-location',
    '--only-binary=:all:', '--upgrade-strategy', 'only-if-needed')
$haveWheels = (Test-Path -LiteralPath $WheelsDir) -and
    (@(Get-ChildItem -LiteralPath $WheelsDir -Filter '*.whl' -ErrorAction SilentlyContinue).Count -gt 0)
if ($haveWheels) {
    Write-Info 'wheels\ found: installing offline from it'
    $pipArgs += @('--no-index', '--find-links', $WheelsDir)
} elseif (-not (Test-Internet)) {
    Stop-Bootstrap ('No internet connection (pypi.org cannot be reached) and no wheels\ folder. ' +
        'Connect and run this again, or prepare wheels\ with: python -m facefinder.wheels --platform win_amd64 --python 3.12')
}
# msvc-runtime puts the Visual C++ runtime DLLs next to python.exe: onnxruntime needs them
# and a bare PC may not have them (installing them system-wide would need admin rights).
Invoke-Python 'Installing the packages' ($pipArgs + @('-r', (Join-Path $Root 'requirements.txt'), 'msvc-runtime'))
if ($WithDlib) {
    & $Python @($pipArgs + @('-r', (Join-Path $Root 'requirements-dlib.txt')))
    if ($LASTEXITCODE -ne 0) {
        Write-Info 'No dlib-bin wheel could be installed: the optional dlib model is left out (the default model is unaffected).'
        $WithDlib = $false
    }
}

# ------------------------------------------------------------------------------------------
Write-Step 'Step 6/7: fetching and checking the models'
if ($SkipModels) {
    Write-Info 'skipped (-SkipModels)'
} else {
    Invoke-Python 'Fetching the models' @((Join-Path $Root 'finder.py'), '--fetch-models')
    if ($WithDlib) {
        & $Python (Join-Path $Root 'finder.py') --fetch-models --model dlib
        if ($LASTEXITCODE -ne 0) { Write-Info 'The optional dlib model could not be fetched; the default model works without it.' }
    }
}

# ------------------------------------------------------------------------------------------
Write-Step 'Step 7/7: writing finder.bat'
# %~dp0 is the folder of finder.bat itself, so the stick works under any drive letter.
# Started from Explorer (double-click, or a folder dropped onto it) the window stays open
# at the end so the results can be read; typed in a console it behaves like a command.
$bat = @'
@echo off
setlocal
rem Face finder launcher, written by bootstrap_embedded_python.ps1. Runs the stick's own Python.
rem   finder.bat E:\Photos [options]   search a folder   (or drop a folder onto this file)
rem   finder.bat                       asks for a folder; press Enter alone for the demo
set "STICK=%~dp0"
set "PY=%STICK%python-embed\python.exe"
set "PYTHONNOUSERSITE=1"
set "PYTHONUTF8=1"
set "PAUSE_AT_END="
set "RC=0"
rem Started from Explorer (double-click or drop), cmd's command line names this file:
rem then keep the window open at the end. Quotes are stripped first so & or ) in a dropped
rem folder's name cannot break the line.
set "CMDLINE=%CMDCMDLINE:"=%"
echo "%CMDLINE%" | find /i "%~nx0" >nul
if not errorlevel 1 set "PAUSE_AT_END=1"
if not exist "%PY%" (
    echo The stick's Python is missing: run bootstrap_embedded_python.ps1 once on a PC with internet.
    set "RC=1"
    goto end
)
if not "%~1"=="" (
    "%PY%" "%STICK%finder.py" %*
    goto ran
)
echo Face finder - finds the people of the "reference" folder in your photos.
echo.
echo Type or drag the photo folder into this window and press Enter
set "PHOTOS="
set /p "PHOTOS=(or just press Enter to see a demo): "
if defined PHOTOS set "PHOTOS=%PHOTOS:"=%"
set "PAUSE_AT_END=1"
if defined PHOTOS (
    "%PY%" "%STICK%finder.py" "%PHOTOS%"
) else (
    "%PY%" "%STICK%finder.py"
)
:ran
set "RC=%ERRORLEVEL%"
:end
if defined PAUSE_AT_END (
    echo.
    pause
)
exit /b %RC%
'@
Set-Content -LiteralPath $Launcher -Value $bat -Encoding ASCII
Write-Info "written: $Launcher"

Remove-Item -LiteralPath $TmpDir -Recurse -Force -ErrorAction SilentlyContinue
Write-Host ''
Write-Host 'Done. The stick is ready.' -ForegroundColor Green
Write-Host '    On any Windows PC: double-click finder.bat, or in a console: finder.bat E:\Photos'
