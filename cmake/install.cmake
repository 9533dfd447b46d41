# evuring's install rules, included by the top-level CMakeLists.txt.
#
# Installs (all paths from GNUInstallDirs, under CMAKE_INSTALL_PREFIX or the
# prefix given to `cmake --install --prefix`):
#
#   LIBDIR/libevuring.so.0.1.0, .so.0 (SONAME), .so   shared library
#   LIBDIR/libevuring.a                                 static library
#   INCLUDEDIR/evuring.h                                extension header
#   LIBDIR/cmake/evuring/                               CMake package
#   LIBDIR/pkgconfig/evuring.pc                         pkg-config file
#   BINDIR/evuring-run, MANDIR/man1/evuring-run.1       LD_PRELOAD launcher
#
# CMake package: find_package(evuring) defines
#   evuring::evuring_shared   the shared library (if it was built)
#   evuring::evuring_static   the static library (if it was built)
#   evuring::evuring          the one to use by default, an ALIAS of one of
#                             the two above (see below)
# Each one brings libevent_core (found with pkg-config by the package): the
# shared library deliberately has no DT_NEEDED on any libevent (docs/design.md,
# "Linking"), so whoever links evuring must also link a libevent. The static
# library also brings liburing and Threads. List evuring ahead of libevent on
# your link line (target_link_libraries(app evuring::evuring PkgConfig::LIBEVENT)):
# the first evconnlistener_* definition wins.
#
# Which library evuring::evuring means: the shared one, unless
#   - evuring was configured with BUILD_SHARED_LIBS=OFF, or only the static
#     library was built: then the static one is the default; or
#   - the consumer sets evuring_USE_STATIC_LIBS before find_package(evuring):
#     ON picks the static library, OFF the shared one (if installed).
# The shared library is always installed when it was built, whatever
# BUILD_SHARED_LIBS says: evuring-run and LD_PRELOAD need it.
#
# The .pc file and evuring-run contain absolute paths; they are written at
# install time, so they name the prefix actually installed to
# (`cmake --install . --prefix P` included; DESTDIR is not part of them).

include(CMakePackageConfigHelpers)

set(EVURING_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/evuring)
set(EVURING_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
set(_evu_export_targets)

# libevent_core for whoever links evuring, but only in the installed package:
# inside this build tree the tests and examples choose their libevent
# themselves. PkgConfig::LIBEVENT_CORE and PkgConfig::URING are the names the
# top-level gives these dependencies; evuringConfig.cmake recreates them.
if(TARGET evuring)
  set_target_properties(evuring PROPERTIES EXPORT_NAME evuring_shared)
  target_link_libraries(evuring INTERFACE "$<INSTALL_INTERFACE:PkgConfig::LIBEVENT_CORE>")
  list(APPEND _evu_export_targets evuring)
endif()
if(TARGET evuring_static)
  set_target_properties(evuring_static PROPERTIES EXPORT_NAME evuring_static)
  target_link_libraries(evuring_static INTERFACE "$<INSTALL_INTERFACE:PkgConfig::LIBEVENT_CORE>")
  list(APPEND _evu_export_targets evuring_static)
endif()
if(NOT _evu_export_targets)
  message(FATAL_ERROR "cmake/install.cmake: neither evuring nor evuring_static is defined")
endif()

if(TARGET evuring AND (NOT DEFINED BUILD_SHARED_LIBS OR BUILD_SHARED_LIBS))
  set(EVURING_DEFAULT_LINKAGE shared)
elseif(TARGET evuring_static)
  set(EVURING_DEFAULT_LINKAGE static)
else()
  set(EVURING_DEFAULT_LINKAGE shared)
endif()

install(TARGETS ${_evu_export_targets}
  EXPORT evuringTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT Runtime
    NAMELINK_COMPONENT Development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT Development)
install(FILES ${PROJECT_SOURCE_DIR}/include/evuring.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  COMPONENT Development)

# --- CMake package -----------------------------------------------------------
install(EXPORT evuringTargets
  NAMESPACE evuring::
  DESTINATION ${EVURING_CMAKE_DIR}
  COMPONENT Development)
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/evuringConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/evuringConfig.cmake
  INSTALL_DESTINATION ${EVURING_CMAKE_DIR})
write_basic_package_version_file(
  ${CMAKE_CURRENT_BINARY_DIR}/evuringConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/evuringConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/evuringConfigVersion.cmake
  DESTINATION ${EVURING_CMAKE_DIR}
  COMPONENT Development)

# --- Files configured at install time ----------------------------------------
# _evu_install_configured(TEMPLATE OUTPUT DESTINATION FILES|PROGRAMS COMPONENT)
# renders TEMPLATE with @ONLY at install time, where these are known:
#   @EVURING_PREFIX@ @EVURING_FULL_LIBDIR@ @EVURING_FULL_INCLUDEDIR@
#   @EVURING_FULL_BINDIR@ @EVURING_VERSION@ @EVURING_PRELOAD_LIB@ @EVURING_SONAME@
#   @EVURING_PC_LIBDIR@ @EVURING_PC_INCLUDEDIR@ (as the FULL ones, but
#   relative to ${prefix} for pkg-config when GNUInstallDirs gave a relative dir)
# and installs the result to DESTINATION.
set(_evu_install_time_dir ${CMAKE_CURRENT_BINARY_DIR}/install-time)
function(_evu_install_configured template output destination kind component)
  set(out ${_evu_install_time_dir}/${output})
  if(TARGET evuring)
    set(soname "$<TARGET_SONAME_FILE_NAME:evuring>")
  else()
    set(soname "")
  endif()
  install(CODE "
    set(EVURING_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
    string(ASCII 36 _evu_dollar)
    foreach(_evu_pair \"LIBDIR=${CMAKE_INSTALL_LIBDIR}\"
                      \"INCLUDEDIR=${CMAKE_INSTALL_INCLUDEDIR}\"
                      \"BINDIR=${CMAKE_INSTALL_BINDIR}\")
      string(REGEX REPLACE \"=.*\" \"\" _evu_name \"\${_evu_pair}\")
      string(REGEX REPLACE \"^[A-Z]*=\" \"\" _evu_dir \"\${_evu_pair}\")
      if(IS_ABSOLUTE \"\${_evu_dir}\")
        set(EVURING_FULL_\${_evu_name} \"\${_evu_dir}\")
        set(EVURING_PC_\${_evu_name} \"\${_evu_dir}\")
      else()
        set(EVURING_FULL_\${_evu_name} \"\${EVURING_PREFIX}/\${_evu_dir}\")
        set(EVURING_PC_\${_evu_name} \"\${_evu_dollar}{prefix}/\${_evu_dir}\")
      endif()
    endforeach()
    set(EVURING_VERSION \"${PROJECT_VERSION}\")
    set(EVURING_SONAME \"${soname}\")
    set(EVURING_PRELOAD_LIB \"\${EVURING_FULL_LIBDIR}/${soname}\")
    configure_file(\"${template}\" \"${out}\" @ONLY)
  " COMPONENT ${component})
  install(${kind} ${out} DESTINATION ${destination} COMPONENT ${component})
endfunction()

_evu_install_configured(${CMAKE_CURRENT_LIST_DIR}/evuring.pc.in evuring.pc
  ${EVURING_PKGCONFIG_DIR} FILES Development)

# evuring-run preloads the shared library: no shared library, no evuring-run.
if(TARGET evuring)
  _evu_install_configured(${PROJECT_SOURCE_DIR}/scripts/evuring-run.in evuring-run
    ${CMAKE_INSTALL_BINDIR} PROGRAMS Runtime)
  install(FILES ${PROJECT_SOURCE_DIR}/docs/evuring-run.1
    DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
    COMPONENT Runtime)
endif()
